//! An in-process S3-compatible server for integration tests.
//!
//! `s3s` (protocol, SigV4 verification) over `s3s-fs` (objects stored as files in a tempdir),
//! served by hyper on `127.0.0.1:0` in a tokio task. `s3s` 0.14.1 with an auth provider
//! verifies header signatures and presigned URLs: the signature over method, path, query and
//! every signed header, and the presigned expiry (`X-Amz-Date` + `X-Amz-Expires` against the
//! server clock). Unsigned requests are denied. `s3s-fs` ignores SSE headers (it stores
//! plaintext and does not echo them back), but a signed SSE header that the client omits
//! still breaks the signature.
//!
//! One server per test: every test gets its own endpoint, credentials and data directory.

// Not every integration test uses every helper.
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The region the server's clients sign for (`s3s` accepts any region in the scope).
pub const REGION: &str = "us-east-1";

/// A running S3-compatible server. Dropping it stops the server and deletes its data.
pub struct TestS3 {
    /// `http://127.0.0.1:PORT`, path-style addressing (`/bucket/key`).
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    /// Where `s3s-fs` keeps the buckets (one directory per bucket).
    root: tempfile::TempDir,
    server: JoinHandle<()>,
    addr: std::net::SocketAddr,
    service: S3Service,
}

/// The accept loop. Connections live in a `JoinSet` owned by the loop, so aborting the loop
/// closes them too (`stop`).
fn serve(listener: TcpListener, service: S3Service) -> JoinHandle<()> {
    tokio::spawn(async move {
        let http = ConnBuilder::new(TokioExecutor::new());
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((socket, _)) = accepted else {
                        continue;
                    };
                    let conn = http
                        .serve_connection(TokioIo::new(socket), service.clone())
                        .into_owned();
                    conns.spawn(async move {
                        // A client closing the connection mid-request is not a test failure.
                        let _ = conn.await;
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    })
}

impl TestS3 {
    /// Starts a server on an ephemeral loopback port with fresh random credentials.
    pub async fn start() -> TestS3 {
        let root = tempfile::tempdir().expect("create tempdir for s3s-fs");
        let fs = s3s_fs::FileSystem::new(root.path()).expect("open s3s-fs root");

        let id = uuid::Uuid::new_v4().simple().to_string();
        let access_key = format!("AKTEST{}", &id[..14].to_ascii_uppercase());
        let secret_key = format!("sk{id}");

        let service = {
            let mut b = S3ServiceBuilder::new(fs);
            b.set_auth(SimpleAuth::from_single(
                access_key.clone(),
                secret_key.clone(),
            ));
            b.build()
        };

        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let server = serve(listener, service.clone());

        TestS3 {
            endpoint: format!("http://{addr}"),
            access_key,
            secret_key,
            root,
            server,
            addr,
            service,
        }
    }

    /// Stops the server: the port refuses connections and open connections are closed. The
    /// data stay for `restart`.
    pub async fn stop(&mut self) {
        self.server.abort();
        let _ = (&mut self.server).await;
    }

    /// Serves again on the same port, credentials and data.
    pub async fn restart(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("rebind {}: {e}", self.addr),
            }
        };
        self.server = serve(listener, self.service.clone());
    }

    /// Creates a bucket with a signed `CreateBucket` request.
    pub async fn create_bucket(&self, name: &str) {
        self.sdk_client()
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create bucket {name}: {e:?}"));
    }

    /// An SDK client for this server: static credentials, `us-east-1`, path-style.
    pub fn sdk_client(&self) -> aws_sdk_s3::Client {
        let credentials = Credentials::new(
            self.access_key.clone(),
            self.secret_key.clone(),
            None,
            None,
            "presignd-tests",
        );
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(credentials)
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(30))
                    .build(),
            )
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// The directory that holds the buckets (`<root>/<bucket>/<key>`).
    pub fn root(&self) -> &std::path::Path {
        self.root.path()
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// PUTs `body` to a presigned URL (a PUT or a part) with its signed headers (reqwest sets
/// `content-length` from the body): the status and the ETag. `(0, None)` when the server
/// refused from the headers alone and closed the connection while the body was being sent.
pub async fn put_presigned(
    http: &reqwest::Client,
    issued: &serde_json::Value,
    body: Vec<u8>,
) -> (u16, Option<String>) {
    let mut req = http.put(issued["url"].as_str().expect("url"));
    if let Some(headers) = issued["headers"].as_object() {
        for (k, v) in headers {
            if k != "content-length" {
                req = req.header(k, v.as_str().expect("header value"));
            }
        }
    }
    let resp = match req.body(body).send().await {
        Ok(resp) => resp,
        Err(e) if e.is_request() => return (0, None),
        Err(e) => panic!("PUT: {e}"),
    };
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (resp.status().as_u16(), etag)
}
