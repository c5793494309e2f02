//! The command line: `presignd [--config FILE] serve | migrate | apply -f FILE | check-config |
//! explain | bucket-policy | bucket-cors | token`.

mod explain;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;

use crate::app::App;
use crate::auth::{find_dev_issuer, mint_dev_token};
use crate::catalog;
use crate::config::{Config, LogFormat};
use crate::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "presignd",
    version,
    about = "Time-bounded S3 presigned URLs for JWT-authenticated users"
)]
pub struct Cli {
    /// Configuration file (TOML). `PRESIGND_…` environment variables override it.
    #[arg(
        long,
        global = true,
        env = "PRESIGND_CONFIG",
        default_value = "presignd.toml"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API.
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Load access points from a YAML or TOML file into the database (idempotent).
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Also delete stored access points that are not in the file.
        #[arg(long)]
        prune: bool,
    },
    /// Validate the configuration (and the access points file it names) and exit.
    CheckConfig,
    /// Print the S3 bucket policy (or access point policy) that denies plain HTTP and, for
    /// SSE-S3/SSE-KMS access points, unencrypted PUTs.
    BucketPolicy {
        /// The access point (from the database, or from `--file`).
        access_point: String,
        /// Read the access point from this apply file instead of the database.
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
    },
    /// Print the bucket CORS rule a browser needs for direct PUT/GET; `--apply` merges it into
    /// the bucket's CORS configuration (other rules are kept).
    BucketCors {
        access_point: String,
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        #[arg(long)]
        apply: bool,
    },
    /// Explain why a request would be allowed or refused, offline, against the database or an
    /// apply file (`-f`): every check of the presign path, each rule traced. Exits 0 on allow,
    /// 1 on deny; with `--matrix FILE`, checks a list of expected decisions and exits 1 if any
    /// differs.
    Explain(explain::ExplainArgs),
    /// Mint a development token from a locally configured HS256 secret or private key.
    Token {
        #[arg(long)]
        sub: String,
        /// Comma-separated groups.
        #[arg(long, value_delimiter = ',', default_value = "")]
        groups: Vec<String>,
        /// Mark the token as issued with multi-factor authentication (`amr: ["mfa"]`).
        #[arg(long)]
        mfa: bool,
        /// Lifetime, e.g. `15m`, `1h`.
        #[arg(long, default_value = "15m")]
        ttl: humantime::Duration,
        /// Issuer to sign for (default: the first with a local signing key).
        #[arg(long)]
        issuer: Option<String>,
    },
}

/// Runs the command; the error is printed by `main` and turns into exit code 1.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let required = cli.config.as_os_str() != "presignd.toml";
    let config = Config::load(&cli.config, required, std::env::vars())?;
    init_tracing(&config);
    let ignored = crate::config::ignored_variables(std::env::vars());
    if !ignored.is_empty() {
        tracing::debug!(
            ?ignored,
            "PRESIGND_* variables without __ are not configuration"
        );
    }
    match cli.command {
        Command::Serve => {
            let app = App::build(config).await?;
            tracing::info!(addr = %app.local_addr(), "presignd listening");
            app.run_until_stopped().await?;
        }
        Command::Migrate => {
            let store = connect(&config).await?;
            store.migrate().await?;
            println!("migrations applied ({})", store.backend());
        }
        Command::Apply { file, prune } => {
            let specs = catalog::read_file(&file, &config)?;
            let store = connect(&config).await?;
            if config.database.migrate_on_start {
                store.migrate().await?;
            }
            let s = catalog::apply(&store, &specs, prune).await?;
            println!(
                "created: {:?}\nupdated: {:?}\nunchanged: {:?}\ndeleted: {:?}",
                s.created, s.updated, s.unchanged, s.deleted
            );
            // What the admin API would have accepted only from an MFA-bearing token.
            for change in &s.mfa_sensitive {
                println!("weakens or moves MFA protection: {change}");
            }
        }
        Command::Explain(args) => explain::run(&config, args).await?,
        Command::CheckConfig => {
            if let Some(file) = &config.access_points.file {
                let specs = catalog::read_file(file, &config)?;
                // The log bucket must not be one of them (serve also checks the database's).
                crate::audit::refuse_log_loops(&config, &specs)?;
                println!("{}: {} access points valid", file.display(), specs.len());
            }
            println!("configuration valid");
            for note in config.explain() {
                println!("- {note}");
            }
            // What `serve` would run with: defaults, the file and PRESIGND_* overrides merged.
            // Secrets serialize as "[redacted]".
            println!(
                "\n# effective configuration (secrets redacted)\n{}",
                toml::to_string_pretty(&config)?
            );
        }
        Command::BucketPolicy { access_point, file } => {
            let ap = find_access_point(&config, &access_point, file.as_deref()).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&crate::bucket::bucket_policy(&ap))?
            );
        }
        Command::BucketCors {
            access_point,
            file,
            apply,
        } => {
            let ap = find_access_point(&config, &access_point, file.as_deref()).await?;
            let rule = crate::bucket::cors_rule(&ap).ok_or_else(|| {
                anyhow::anyhow!(
                    "access point {access_point} has no cors_origins: no browser may use it"
                )
            })?;
            let doc = serde_json::json!({ "CORSRules": [&rule] });
            println!("{}", serde_json::to_string_pretty(&doc)?);
            if apply {
                crate::bucket::apply::apply_cors(&config, &ap, rule).await?;
                println!("applied to bucket {}", ap.target.sdk_bucket());
            }
        }
        Command::Token {
            sub,
            groups,
            mfa,
            ttl,
            issuer,
        } => {
            let issuer = find_dev_issuer(&config.auth.issuers, issuer.as_deref()).ok_or_else(|| {
                anyhow::anyhow!(
                    "no issuer with a local signing key (auth.issuers[].hs256_secret or signing_key_file) is configured"
                )
            })?;
            let groups: Vec<String> = groups.into_iter().filter(|g| !g.is_empty()).collect();
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let token = mint_dev_token(issuer, &sub, &groups, mfa, Duration::from(ttl), now)?;
            println!("{token}");
        }
    }
    Ok(())
}

/// An access point by name, from an apply file or the database, checked like `serve` does.
async fn find_access_point(
    config: &Config,
    name: &str,
    file: Option<&std::path::Path>,
) -> anyhow::Result<crate::policy::CompiledAccessPoint> {
    let spec = match file {
        Some(file) => catalog::read_file(file, config)?
            .into_iter()
            .find(|s| s.name == name),
        None => connect(config)
            .await?
            .get_access_point(name)
            .await?
            .map(|stored| stored.spec),
    };
    let spec = spec.ok_or_else(|| anyhow::anyhow!("no access point named {name}"))?;
    Ok(catalog::check_spec(&spec, config)?)
}

async fn connect(config: &Config) -> anyhow::Result<Store> {
    Ok(Store::connect(
        config.database.url.expose_secret(),
        config.database.max_connections,
    )
    .await?)
}

fn init_tracing(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Compact => builder.compact().try_init(),
    };
}
