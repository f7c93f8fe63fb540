//! A product's picture: an upload checked, resized and stored (`crate::media`), the product
//! pointed at it with its audit row, the picture it replaces removed from disk once no
//! product shows it; and reading a stored picture for `/media/<name>`. The console's form and
//! the API's `PUT`/`DELETE /api/v1/admin/products/{slug}/image` both come here.

use kami_store::{Actor, AdminProduct};
use tokio::sync::{Mutex, Semaphore};

use super::{ServiceError, ServiceResult};
use crate::media::{self, MediaDir, MediaError, MediaName};
use crate::state::AppState;

/// One picture decoded at a time: a decoded picture may take up to 256 MiB.
static DECODING: Semaphore = Semaphore::const_new(1);
/// Writing files and pointing products at them, and removing files no product points at,
/// never interleave (in this process): a file just written is never collected before the
/// product that uses it is committed.
static FILES: Mutex<()> = Mutex::const_new(());

/// The media directory: `<server.data_dir>/media`.
pub fn media_dir(state: &AppState) -> MediaDir {
    MediaDir::new(state.config.server.data_dir.join("media"))
}

fn refused(e: MediaError) -> ServiceError {
    let code = match e {
        MediaError::TooLarge => "image_too_large",
        MediaError::TooManyPixels { .. } => "image_too_many_pixels",
        MediaError::Empty | MediaError::NotAnImage => "not_an_image",
        MediaError::Unsupported(_) => "unsupported_image",
        MediaError::Damaged(_) => "damaged_image",
    };
    ServiceError::invalid(code, e.to_string())
}

/// An upload checked and resized, ready to attach to a product.
#[derive(Debug, Clone)]
pub struct Prepared(media::Processed);

/// Check and resize an upload (refused with a precise error: too large, not a picture, a
/// format kami does not take, too many pixels, damaged). Stores nothing.
pub async fn prepare(bytes: Vec<u8>) -> ServiceResult<Prepared> {
    if bytes.len() > media::MAX_UPLOAD_BYTES {
        return Err(refused(MediaError::TooLarge));
    }
    let _permit = DECODING.acquire().await.map_err(ServiceError::internal)?;
    tokio::task::spawn_blocking(move || media::process(&bytes))
        .await
        .map_err(|e| ServiceError::internal(format!("decoding an image: {e}")))?
        .map(Prepared)
        .map_err(refused)
}

/// Resize and store `bytes` as the product's picture (replacing any), audited. Nothing is
/// stored and nothing changes when the file is refused or the product does not exist.
#[tracing::instrument(level = "debug", skip_all, fields(product = %slug, bytes = bytes.len()))]
pub async fn set(
    state: &AppState,
    slug: &str,
    bytes: Vec<u8>,
    actor: &Actor,
) -> ServiceResult<AdminProduct> {
    if bytes.len() > media::MAX_UPLOAD_BYTES {
        return Err(refused(MediaError::TooLarge));
    }
    // Said before any decoding work.
    state.store.admin_product(slug).await?;
    let prepared = prepare(bytes).await?;
    attach(state, slug, prepared, actor).await
}

/// Store a prepared picture and make it the product's (replacing any), audited.
pub async fn attach(
    state: &AppState,
    slug: &str,
    prepared: Prepared,
    actor: &Actor,
) -> ServiceResult<AdminProduct> {
    let processed = prepared.0;
    let dir = media_dir(state);
    let files = FILES.lock().await;
    let names = tokio::task::spawn_blocking(move || {
        let full = dir.put(&processed.full)?;
        let thumb = dir.put(&processed.thumb)?;
        Ok::<_, std::io::Error>((full.as_str().to_owned(), thumb.as_str().to_owned()))
    })
    .await
    .map_err(ServiceError::internal)?
    .map_err(|e| ServiceError::internal(format!("writing to the media directory: {e}")))?;
    let (product, old) = match state
        .store
        .set_product_image(slug, Some(names.clone()), actor, state.now_ms())
        .await
    {
        Ok(done) => done,
        Err(e) => {
            drop(files);
            collect(state, [Some(names.0), Some(names.1)]).await;
            return Err(e.into());
        }
    };
    drop(files);
    state.catalog.invalidate();
    collect(state, old).await;
    Ok(product)
}

/// Remove the product's picture, audited (none: nothing changes, nothing is audited).
pub async fn clear(state: &AppState, slug: &str, actor: &Actor) -> ServiceResult<AdminProduct> {
    let (product, old) = state
        .store
        .set_product_image(slug, None, actor, state.now_ms())
        .await?;
    state.catalog.invalidate();
    collect(state, old).await;
    Ok(product)
}

/// Remove these media files from disk unless a product still shows them. Failures are
/// logged: a file left behind is only disk space.
pub async fn collect(state: &AppState, names: [Option<String>; 2]) {
    let _files = FILES.lock().await;
    let dir = media_dir(state);
    for name in names.iter().flatten() {
        let Some(name) = MediaName::parse(name) else {
            continue;
        };
        match state.store.media_in_use(name.as_str()).await {
            Ok(false) => {
                if let Err(e) = dir.remove(&name) {
                    tracing::warn!(file = name.as_str(), "removing an unused picture: {e}");
                }
            }
            Ok(true) => {}
            Err(e) => tracing::warn!(file = name.as_str(), "checking a picture's use: {e}"),
        }
    }
}

/// A stored picture by its file name: `None` for a name that is not a media name or a file
/// that is not there.
pub async fn read(state: &AppState, name: &str) -> ServiceResult<Option<(Vec<u8>, &'static str)>> {
    let Some(name) = MediaName::parse(name) else {
        return Ok(None);
    };
    let bytes = media_dir(state)
        .read(&name)
        .await
        .map_err(|e| ServiceError::internal(format!("reading {}: {e}", name.as_str())))?;
    Ok(bytes.map(|b| (b, name.content_type())))
}

/// The URL a stored picture is served at.
pub fn url(name: &str) -> String {
    format!("/media/{name}")
}
