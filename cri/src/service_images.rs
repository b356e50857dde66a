//! The ImageService half of the gRPC edge (images.rs does the work).

use tonic::{Request, Response, Status};

use crate::api::image_service_server::ImageService;
use crate::api::*;
use crate::service::{Boxed, Service};
use crate::state::Cri;

type R<T> = Result<Response<T>, Status>;

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
        let image_ref = crate::images::pull(&self.0, r.into_inner()).await?;
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
