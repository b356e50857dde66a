//! The ImageService half of the gRPC edge (images.rs does the work).

use std::time::Duration;

use tonic::{Request, Response, Status};

use crate::api::image_service_server::ImageService;
use crate::api::*;
use crate::service::{Boxed, Service};
use crate::state::Cri;

type R<T> = Result<Response<T>, Status>;

/// The `grpc-timeout` request header (gRPC over HTTP/2: 1–8 digits and a
/// unit, H M S m u n).
fn grpc_timeout(m: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let v = m.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn ok<T>(v: T) -> R<T> {
    Ok(Response::new(v))
}

#[tonic::async_trait]
impl ImageService for Service {
    async fn list_images(&self, r: Request<ListImagesRequest>) -> R<ListImagesResponse> {
        ok(ListImagesResponse {
            images: crate::images::list(&self.0, r.into_inner().filter).await?,
        })
    }

    type StreamImagesStream = Boxed<StreamImagesResponse>;
    async fn stream_images(&self, r: Request<StreamImagesRequest>) -> R<Self::StreamImagesStream> {
        let images = crate::images::list(&self.0, r.into_inner().filter).await?;
        ok(Box::pin(tokio_stream::once(Ok(StreamImagesResponse {
            images,
        }))))
    }

    async fn image_status(&self, r: Request<ImageStatusRequest>) -> R<ImageStatusResponse> {
        ok(crate::images::status(&self.0, r.into_inner()).await?)
    }

    async fn pull_image(&self, r: Request<PullImageRequest>) -> R<PullImageResponse> {
        // tonic ends a call whose `grpc-timeout` passed with CANCELLED; the
        // CRI (and critest) want DEADLINE_EXCEEDED for a pull that outlives
        // the caller's deadline. So the pull gets its own deadline, a
        // millisecond (a tokio timer tick) before tonic's: ours is seen
        // first. berthd finishes the pull anyway: the next one is instant.
        let budget = grpc_timeout(r.metadata());
        let pull = crate::images::pull(&self.0, r.into_inner());
        let image_ref = match budget {
            Some(d) => tokio::time::timeout(d.saturating_sub(Duration::from_millis(1)), pull)
                .await
                .map_err(|_| {
                    Status::deadline_exceeded(
                        "the pull did not finish within the caller's deadline",
                    )
                })??,
            None => pull.await?,
        };
        ok(PullImageResponse { image_ref })
    }

    async fn remove_image(&self, r: Request<RemoveImageRequest>) -> R<RemoveImageResponse> {
        crate::images::remove(&self.0, r.into_inner()).await?;
        ok(RemoveImageResponse {})
    }

    async fn image_fs_info(&self, _r: Request<ImageFsInfoRequest>) -> R<ImageFsInfoResponse> {
        let info = Cri::blocking(|| {
            Ok(crate::images::fs_info(std::path::Path::new(
                "/var/lib/berth/images",
            )))
        })
        .await?;
        ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        let t = |v: &str| {
            let mut m = tonic::metadata::MetadataMap::new();
            m.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&m)
        };
        assert_eq!(t("800u"), Some(Duration::from_micros(800)));
        assert_eq!(t("2S"), Some(Duration::from_secs(2)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("5m"), Some(Duration::from_millis(5)));
        for bad in ["", "m", "123456789m", "5x", "-5m", "5"] {
            assert_eq!(t(bad), None, "{bad}");
        }
        assert_eq!(grpc_timeout(&tonic::metadata::MetadataMap::new()), None);
    }
}
