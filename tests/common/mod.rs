//! Shared test harness: the in-process S3 server, real JWT keys and a JWKS server, and a
//! presignd instance wired to them.
#![allow(dead_code)]

pub mod app;
pub mod jwt;
pub mod redis;
pub mod rgw;
pub mod s3;
pub mod tls;
