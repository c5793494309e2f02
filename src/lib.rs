//! presignd: time-bounded S3 presigned URLs for JWT-authenticated users, under per-group
//! access-point rules, with an audit record of every decision.
//!
//! The request path: `http::extract` (principal) → `policy` (access point, key, rules) →
//! `sign` → `audit` → response.
#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod auth;
pub mod bucket;
pub mod catalog;
pub mod cli;
pub mod cloudfront;
pub mod config;
pub mod explain;
pub mod grants;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod policy;
pub mod serve;
pub mod sign;
pub mod state;
pub mod store;
pub mod uploads;
pub mod webhooks;

pub use app::App;
pub use auth::Principal;
