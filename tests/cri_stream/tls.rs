//! The streaming server with TLS (part of tests/cri_stream.rs): a missing
//! key file is a named error at start; with a self-signed certificate
//! (openssl in the box: a CA and a server certificate) the URLs are https:// and an exec runs over a TLS
//! WebSocket that verifies it.

use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::common::*;
use super::cri_client::connect;
use super::{drain, exec_req, text};

pub async fn tls(b: &berth_box::SystemdBox, web: &str) {
    let cri_bin = std::path::PathBuf::from(BERTHD).with_file_name("berth-cri");
    // A CA of the test's and a server certificate it signed for
    // 127.0.0.1 (webpki takes no self-signed CA as the server's own).
    b.sh_ok(
        "cd /tmp && ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes' && \
         openssl req -x509 $ec -keyout ca.key -out ca.crt -days 1 -subj /CN=berth-test-ca 2>/dev/null && \
         openssl req $ec -keyout s.key -out s.csr -subj /CN=127.0.0.1 2>/dev/null && \
         echo subjectAltName=IP:127.0.0.1 > s.ext && \
         openssl x509 -req -in s.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \
           -extfile s.ext -out s.crt 2>/dev/null",
    );
    let bad = b.sh_ok(&format!(
        "{} --listen /tmp/x.sock --state-dir /tmp/xs --run-dir /tmp/xr --stream-address 127.0.0.1:0 \
         --stream-tls-cert /tmp/s.crt --stream-tls-key /tmp/none.key 2>&1; echo rc=$?",
        cri_bin.display()
    ));
    assert!(
        bad.contains("--stream-tls-key /tmp/none.key") && bad.trim_end().ends_with("rc=1"),
        "{bad}"
    );
    // berth-cri again with TLS: its socket starts the new ExecStart.
    b.sh_ok(
        "sed -i 's|^ExecStart=.*|& --stream-tls-cert /tmp/s.crt --stream-tls-key /tmp/s.key|' \
         /run/systemd/system/berth-cri.service && systemctl daemon-reload && \
         systemctl stop berth-cri.service",
    );
    let mut cri = connect(b).await;
    let url = cri
        .rt
        .exec(exec_req(web, &["sh", "-c", "echo tls-ok"], false))
        .await
        .unwrap()
        .into_inner()
        .url;
    assert!(url.starts_with("https://127.0.0.1:10010/exec/"), "{url}");

    // A client that trusts the test's CA only.
    let pem = std::fs::read(format!("/proc/{}/root/tmp/ca.crt", b.init_pid())).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&pem).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let ns = format!("/proc/{}/ns/net", b.init_pid());
    let tcp = in_netns(&ns, || std::net::TcpStream::connect("127.0.0.1:10010")).unwrap();
    tcp.set_nonblocking(true).unwrap();
    let tcp = tokio::net::TcpStream::from_std(tcp).unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the streaming server");
    let mut req = url
        .replacen("https://", "wss://", 1)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let (mut s, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    let got = drain(&mut s).await;
    assert_eq!(text(&got, 1), "tls-ok\n");
    assert_eq!(text(&got, 3), r#"{"metadata":{},"status":"Success"}"#);

    // crictl (when given) trusts any certificate unless told a CA.
    if let Ok(path) = std::env::var("BERTH_CRICTL") {
        for t in ["spdy", "websocket"] {
            let out = b.sh_ok(&format!(
                "timeout -k 1 10 {path} -r unix:///run/berth/cri.sock exec --transport {t} {web} echo tls-{t}"
            ));
            assert_eq!(out.trim(), format!("tls-{t}"));
        }
    }
}
