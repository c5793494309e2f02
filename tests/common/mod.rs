//! Shared test harness: a presignd instance in process (`app`) or as the real binary
//! (`daemon`), the in-process S3 server, real JWT keys and a JWKS server, Redis, radosgw, a
//! throwaway CA. Each test binary uses a part of it, hence the one `dead_code` allowance.
#![allow(dead_code)]

pub mod app;
pub mod browser;
pub mod cloudfront;
pub mod daemon;
pub mod form;
pub mod jwt;
pub mod policy_gen;
pub mod postgres;
pub mod redis;
pub mod rgw;
pub mod s3;
pub mod tls;
