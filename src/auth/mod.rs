//! Who is calling: bearer extraction, per-issuer configuration, JWKS key cache, claims mapping
//! to a [`Principal`], token revocations (checked in memory on every request), and dev-token
//! minting for `presignd token`.

mod bearer;
pub(crate) mod claims;
mod dev_token;
mod error;
mod jwks;
mod principal;
pub mod revocations;
mod token_cache;
mod verifier;

pub use bearer::bearer_token;
pub use dev_token::{DevTokenError, find_dev_issuer, mint_dev_token};
pub use error::{AuthError, AuthSetupError};
pub use principal::Principal;
pub use verifier::{JwksObserver, TokenCacheObserver, Verifier, VerifierOptions};

/// Largest token accepted anywhere (header or `verify`): real IdP tokens are a few KiB.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
