//! A local S3-compatible server for the README walkthrough: s3s-fs on 127.0.0.1:9000, objects
//! as files under `var/s3`, the dev keys of `examples/presignd.toml`, bucket `presignd-dev`.
//! It verifies SigV4 signatures and presigned-URL expiry like S3 does.
//!
//!     cargo run --example local_s3

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;

const ADDR: &str = "127.0.0.1:9000";
const ROOT: &str = "var/s3";
const BUCKET: &str = "presignd-dev";

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
        let conn = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
