//! Console forms that carry a file (`multipart/form-data`): the new-product form and the
//! picture form. The session is checked before the body is read; the text fields and the one
//! file are read with caps (the route's body limit bounds the whole); the form token is then
//! checked like any console POST.

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::http::StatusCode;
use axum::response::Response;

use super::guard::{self, Admin};
use crate::http::web::request::Ctx;
use crate::media::MAX_UPLOAD_BYTES;
use crate::state::AppState;

/// The route's body limit: the largest picture and room for the form's text.
pub const BODY_LIMIT: usize = MAX_UPLOAD_BYTES + TEXT_LIMIT * 2;
/// The most one text field may hold.
const TEXT_LIMIT: usize = 256 * 1024;

/// A file form's content.
pub struct Upload {
    pub fields: Vec<(String, String)>,
    /// The file field's bytes; `None` when no file was chosen.
    pub file: Option<Vec<u8>>,
}

/// Why a file form could not be read.
pub enum UploadError {
    /// The file (or the form) is larger than allowed.
    TooLarge,
    /// Not a multipart form, or a broken one (the text says how).
    Malformed(String),
}

impl From<axum::extract::multipart::MultipartError> for UploadError {
    fn from(e: axum::extract::multipart::MultipartError) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            UploadError::TooLarge
        } else {
            UploadError::Malformed(e.body_text())
        }
    }
}

async fn read(mut form: Multipart, file_field: &str) -> Result<Upload, UploadError> {
    let mut fields = Vec::new();
    let mut file = None;
    while let Some(mut part) = form.next_field().await? {
        let name = part.name().unwrap_or("").to_owned();
        let is_file = name == file_field;
        let cap = if is_file {
            MAX_UPLOAD_BYTES
        } else {
            TEXT_LIMIT
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = part.chunk().await? {
            if bytes.len() + chunk.len() > cap {
                return Err(UploadError::TooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        if is_file {
            // No file chosen: browsers send an empty part.
            if !bytes.is_empty() {
                file = Some(bytes);
            }
        } else {
            let text = String::from_utf8(bytes)
                .map_err(|_| UploadError::Malformed(format!("the field {name} is not text")))?;
            fields.push((name, text));
        }
    }
    Ok(Upload { fields, file })
}

/// Why a file form is not acted on.
pub enum Refused {
    /// Not signed in, or a refused POST: answer with this page.
    Page(Response),
    /// The form could not be read: show it again with the reason (nothing changed).
    Form(Admin, UploadError),
}

/// The signed-in user and the form, once the form token checks out.
pub async fn post(
    state: &AppState,
    ctx: &Ctx,
    form: Result<Multipart, MultipartRejection>,
    file_field: &str,
) -> Result<(Admin, Upload), Refused> {
    let admin = guard::require(state, ctx).await.map_err(Refused::Page)?;
    let upload = match form {
        Ok(form) => read(form, file_field).await,
        Err(e) => Err(UploadError::Malformed(e.body_text())),
    };
    match upload {
        Ok(upload) => {
            guard::check_post(state, ctx, Some(&admin), &admin.csrf, &upload.fields)
                .map_err(Refused::Page)?;
            Ok((admin, upload))
        }
        // The form token was not read: nothing is changed, the form is shown again.
        Err(_) if ctx.cross_site => Err(Refused::Page(super::message(
            state,
            ctx,
            Some(&admin),
            StatusCode::FORBIDDEN,
            "forbidden",
        ))),
        Err(e) => Err(Refused::Form(admin, e)),
    }
}

impl UploadError {
    /// The seller's message and the status to answer with.
    pub fn explain(&self) -> (StatusCode, String) {
        match self {
            UploadError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the image is larger than {} MB",
                    MAX_UPLOAD_BYTES / (1024 * 1024)
                ),
            ),
            UploadError::Malformed(m) => (StatusCode::BAD_REQUEST, format!("the form: {m}")),
        }
    }
}
