//! Multipart uploads, the parts that do not depend on the API: how an upload is cut into parts
//! (`plan`, pure) and the sweeper that aborts abandoned ones (`sweeper`). Where the rest lives:
//!
//! - the routes (create, part URLs, complete, abort): `http::uploads`;
//! - the S3 calls (CreateMultipartUpload, UploadPart URLs, Complete, Abort): `sign::multipart`;
//! - the `multipart_uploads` table: `store::uploads`;
//! - `[uploads]` configuration: `config::UploadsConfig`.

pub mod plan;
mod sweeper;
pub mod verify;

pub use sweeper::{ABORT_CLAIM_SECONDS, COMPLETE_CLAIM_SECONDS, run_sweeper, sweep_once, unix};
