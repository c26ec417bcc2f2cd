//! The web client's files (`client-web/dist`), read into memory once at start so
//! serving them touches no disk and no path from a request ever reaches the
//! file system.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Largest file accepted from the web root (the bundle is a few hundred KiB).
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// What the browser may load and talk to: only this origin (and media/blob URLs
/// the app creates itself).
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; \
                   connect-src 'self' ws: wss:; style-src 'self'; script-src 'self'; \
                   object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Why the web root could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// A file or the directory could not be read.
    #[error("web root {path}: {source}")]
    Read {
        /// The file or directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file is unreasonably large for a web client.
    #[error("web root {0}: larger than 16 MiB")]
    TooLarge(String),
}

#[derive(Clone)]
struct Asset {
    content_type: &'static str,
    body: Bytes,
}

/// The web client's files by URL path (`/`, `/app.js`, ...).
#[derive(Clone, Default)]
pub struct WebAssets {
    files: Arc<HashMap<String, Asset>>,
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") | Some("map") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        _ => "application/octet-stream",
    }
}

impl WebAssets {
    /// Reads every file directly in `dir` (not sub-directories).
    pub fn load(dir: &Path) -> Result<Self, WebError> {
        let read_err = |path: &Path, source| WebError::Read {
            path: path.display().to_string(),
            source,
        };
        let mut files = HashMap::new();
        for entry in std::fs::read_dir(dir).map_err(|e| read_err(dir, e))? {
            let entry = entry.map_err(|e| read_err(dir, e))?;
            let path = entry.path();
            let meta = entry.metadata().map_err(|e| read_err(&path, e))?;
            if !meta.is_file() {
                continue;
            }
            if meta.len() > MAX_FILE_BYTES {
                return Err(WebError::TooLarge(path.display().to_string()));
            }
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            let body = std::fs::read(&path).map_err(|e| read_err(&path, e))?;
            let asset = Asset {
                content_type: content_type(&name),
                body: Bytes::from(body),
            };
            if name == "index.html" {
                files.insert("/".to_string(), asset.clone());
            }
            files.insert(format!("/{name}"), asset);
        }
        Ok(Self {
            files: Arc::new(files),
        })
    }

    /// True when there is a page to serve at `/`.
    pub fn has_index(&self) -> bool {
        self.files.contains_key("/")
    }

    /// The response for a URL path, if it is one of the files.
    pub fn get(&self, path: &str) -> Option<Response> {
        let asset = self.files.get(path)?;
        let mut res = (StatusCode::OK, asset.body.clone()).into_response();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        // Small files, and a new build must reach browsers at once.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        Some(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_files_of_the_root_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("throng-web-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("index.html"), "<!doctype html>").unwrap();
        std::fs::write(dir.join("app.js"), "1").unwrap();
        std::fs::write(dir.join("sub/secret.txt"), "no").unwrap();
        let web = WebAssets::load(&dir).unwrap();
        assert!(web.has_index());
        let res = web.get("/").unwrap();
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert_eq!(
            web.get("/app.js").unwrap().headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert!(web.get("/sub/secret.txt").is_none());
        assert!(web.get("/../index.html").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
