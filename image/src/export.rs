//! Writing images out as an OCI image layout: a directory, or the same layout
//! in a tar (`oci-archive`). index.json names each image by its full
//! reference in `org.opencontainers.image.ref.name` (as containerd does), so
//! importing the layout again gives the same names.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::content::{ContentError, ContentStore};
use crate::digest::Digest;
use crate::meta::ImageRecord;
use crate::oci::{self, Descriptor, Index};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{} exists and is not an empty directory", .0.display())]
    DestinationNotEmpty(PathBuf),
    #[error("nothing to save")]
    Nothing,
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_at<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ExportError + 'a {
    move |source| ExportError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// index.json for the images, and every blob they need (sorted, once each).
fn plan(records: &[ImageRecord]) -> Result<(Vec<u8>, BTreeSet<Digest>), ExportError> {
    if records.is_empty() {
        return Err(ExportError::Nothing);
    }
    let mut blobs = BTreeSet::new();
    let mut manifests = Vec::new();
    for r in records {
        blobs.extend(r.blobs());
        let mut d = Descriptor::new(&r.manifest_media_type, r.manifest.clone(), r.manifest_size);
        d.platform = Some(r.platform.clone());
        if !r.name.starts_with("sha256:") {
            d.annotations.insert(oci::REF_NAME.into(), r.name.clone());
            d.annotations
                .insert("io.containerd.image.name".into(), r.name.clone());
        }
        manifests.push(d);
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(oci::OCI_INDEX.into()),
        manifests,
        annotations: BTreeMap::new(),
        extra: BTreeMap::new(),
    };
    let json = serde_json::to_vec_pretty(&index).map_err(|e| ExportError::Io {
        what: "cannot encode",
        path: "index.json".into(),
        source: e.into(),
    })?;
    Ok((json, blobs))
}

/// Writes an OCI layout directory at `dest` (created; must be absent or empty).
pub fn to_dir(cs: &ContentStore, records: &[ImageRecord], dest: &Path) -> Result<(), ExportError> {
    let (index, blobs) = plan(records)?;
    match fs::read_dir(dest) {
        Ok(mut it) => {
            if it.next().is_some() {
                return Err(ExportError::DestinationNotEmpty(dest.to_owned()));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dest).map_err(io_at("cannot create", dest))?
        }
        Err(e) => return Err(io_at("cannot open", dest)(e)),
    }
    let r = (|| {
        let bdir = dest.join("blobs/sha256");
        fs::create_dir_all(&bdir).map_err(io_at("cannot create", &bdir))?;
        for d in &blobs {
            let p = bdir.join(d.hex());
            let mut f = fs::File::create(&p).map_err(io_at("cannot create", &p))?;
            cs.copy_to(d, &mut f)?;
            f.sync_all().map_err(io_at("cannot write", &p))?;
        }
        let p = dest.join("oci-layout");
        fs::write(&p, LAYOUT).map_err(io_at("cannot write", &p))?;
        // index.json last: a layout without it is visibly incomplete.
        let p = dest.join("index.json");
        fs::write(&p, &index).map_err(io_at("cannot write", &p))?;
        Ok(())
    })();
    if r.is_err() {
        let _ = fs::remove_dir_all(dest.join("blobs"));
        let _ = fs::remove_file(dest.join("oci-layout"));
        let _ = fs::remove_file(dest.join("index.json"));
    }
    r
}

/// Writes the OCI layout as a tar stream to `w`.
pub fn to_tar(
    cs: &ContentStore,
    records: &[ImageRecord],
    w: &mut dyn Write,
) -> Result<(), ExportError> {
    let (index, blobs) = plan(records)?;
    let tar_err = |source| ExportError::Io {
        what: "cannot write the archive",
        path: "-".into(),
        source,
    };
    let mut b = tar::Builder::new(w);
    let header = |size: u64, mode: u32, kind: tar::EntryType| {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(mode);
        h.set_entry_type(kind);
        h.set_mtime(0);
        h
    };
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(0, 0o755, tar::EntryType::Directory);
        b.append_data(&mut h, dir, io::empty()).map_err(tar_err)?;
    }
    for d in &blobs {
        let f = cs.open_blob(d)?;
        let len = f.metadata().map_err(tar_err)?.len();
        let mut h = header(len, 0o644, tar::EntryType::Regular);
        b.append_data(&mut h, format!("blobs/sha256/{}", d.hex()), f)
            .map_err(tar_err)?;
    }
    for (name, data) in [("oci-layout", LAYOUT), ("index.json", &index[..])] {
        let mut h = header(data.len() as u64, 0o644, tar::EntryType::Regular);
        b.append_data(&mut h, name, data).map_err(tar_err)?;
    }
    b.into_inner().map_err(tar_err)?.flush().map_err(tar_err)?;
    Ok(())
}
