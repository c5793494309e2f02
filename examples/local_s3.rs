//! A local S3-compatible server for the README walkthrough: s3s-fs on 127.0.0.1:9000, objects
//! as files under `var/s3`, the dev keys of `examples/presignd.toml`, bucket `presignd-dev`.
//! It verifies SigV4 signatures and presigned-URL expiry like S3 does.
//!
//! s3s has no bucket CORS, so this server answers the rule that `presignd bucket-cors avatars
//! -f examples/access-points.yaml` prints, for the browser page in `examples/web/` served from
//! `http://localhost:5173` (see `examples/web/index.html`).
//!
//!     cargo run --example local_s3

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::net::TcpListener;

const ADDR: &str = "127.0.0.1:9000";
const ROOT: &str = "var/s3";
const BUCKET: &str = "presignd-dev";
/// The `avatars` access point's `cors_origins` in examples/access-points.yaml.
const CORS_ORIGIN: &str = "http://localhost:5173";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(format!("{ROOT}/{BUCKET}"))?;
    let fs = s3s_fs::FileSystem::new(ROOT).map_err(|e| format!("s3s-fs: {e:?}"))?;
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(
        "presignd-dev",
        "presignd-dev-secret",
    ));
    let service = builder.build();

    let listener = TcpListener::bind(ADDR).await?;
    println!("local S3 on http://{ADDR} (bucket {BUCKET}, data in {ROOT}); Ctrl-C stops it");
    let http = ConnBuilder::new(TokioExecutor::new());
    loop {
        let (socket, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let service = service.clone();
        let conn = http
            .serve_connection(
                TokioIo::new(socket),
                hyper::service::service_fn(move |req| with_cors(service.clone(), req)),
            )
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

/// Bucket CORS for `CORS_ORIGIN` the way S3 applies a matching rule: preflights get the allowed
/// methods and the requested headers back, responses get the origin and an exposed ETag.
async fn with_cors(
    service: S3Service,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<s3s::HttpResponse, s3s::HttpError> {
    use hyper::header::HeaderValue;
    let allowed = req
        .headers()
        .get("origin")
        .is_some_and(|o| o.as_bytes() == CORS_ORIGIN.as_bytes());
    if req.method() == hyper::Method::OPTIONS
        && req.headers().contains_key("access-control-request-method")
    {
        let mut resp = hyper::Response::new(s3s::Body::empty());
        if allowed {
            let requested = req.headers().get("access-control-request-headers").cloned();
            let h = resp.headers_mut();
            h.insert(
                "access-control-allow-origin",
                HeaderValue::from_static(CORS_ORIGIN),
            );
            h.insert(
                "access-control-allow-methods",
                HeaderValue::from_static("GET, HEAD, PUT, DELETE"),
            );
            if let Some(requested) = requested {
                h.insert("access-control-allow-headers", requested);
            }
            h.insert("access-control-max-age", HeaderValue::from_static("3000"));
        } else {
            *resp.status_mut() = hyper::StatusCode::FORBIDDEN;
        }
        resp.headers_mut()
            .insert("vary", HeaderValue::from_static("Origin"));
        return Ok(resp);
    }
    let mut resp = hyper::service::Service::call(&service, req).await?;
    if allowed {
        let h = resp.headers_mut();
        h.insert(
            "access-control-allow-origin",
            HeaderValue::from_static(CORS_ORIGIN),
        );
        h.insert(
            "access-control-expose-headers",
            HeaderValue::from_static("ETag"),
        );
        h.insert("vary", HeaderValue::from_static("Origin"));
    }
    Ok(resp)
}
