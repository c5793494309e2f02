//! `presignd explain`: the admin API's explanation, offline — simulated claims against the
//! access points of an apply file (`-f`) or the database — for one request, or for a
//! `--matrix` of expected decisions (policy unit tests a team keeps in CI).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Args;

use crate::Principal;
use crate::auth::AuthError;
use crate::catalog::{self, Catalog};
use crate::config::Config;
use crate::explain::{self, Explanation, Outcome, Question, matrix};
use crate::http::error::ApiError;
use crate::policy::{CompiledAccessPoint, PresignOperation, PresignRequest};

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Read the access points from this apply file instead of the database.
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Check every case of this YAML file of expected decisions instead of one request.
    #[arg(long, conflicts_with_all = ["operation", "target"])]
    matrix: Option<PathBuf>,
    /// The subject (`sub`) to simulate.
    #[arg(long, required_unless_present = "matrix")]
    sub: Option<String>,
    /// Comma-separated groups.
    #[arg(long, value_delimiter = ',', default_value = "")]
    groups: Vec<String>,
    /// The issuer (default: the first configured).
    #[arg(long)]
    issuer: Option<String>,
    /// The token carries MFA.
    #[arg(long)]
    mfa: bool,
    /// The caller's address (default unknown, which `network.allowed_cidrs` refuses).
    #[arg(long)]
    ip: Option<IpAddr>,
    /// The request arrives over plain HTTP.
    #[arg(long)]
    plain_http: bool,
    #[arg(long)]
    content_type: Option<String>,
    #[arg(long)]
    content_length: Option<u64>,
    /// POST only: the key is a prefix the browser completes.
    #[arg(long)]
    key_starts_with: bool,
    /// Print the explanation as JSON.
    #[arg(long)]
    json: bool,
    /// get, put, delete or post.
    #[arg(required_unless_present = "matrix")]
    operation: Option<String>,
    /// `<access point>/<key>`, the key relative to the access point's prefix.
    #[arg(required_unless_present = "matrix")]
    target: Option<String>,
}

/// A request refused (or a matrix case that differs): exit status 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Denied(String);

pub async fn run(config: &Config, args: ExplainArgs) -> anyhow::Result<()> {
    let access_points = load(config, &args).await?;
    match &args.matrix {
        Some(file) => run_matrix(config, &access_points, file),
        None => run_one(config, &access_points, &args),
    }
}

/// The access points of the file or the database, as `serve` would serve them (the database's
/// through `catalog::load`, which already leaves out and logs invalid ones).
async fn load(config: &Config, args: &ExplainArgs) -> anyhow::Result<Catalog> {
    match &args.file {
        Some(file) => {
            let compiled = catalog::read_file(file, config)?
                .iter()
                .map(|spec| catalog::check_spec(spec, config))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Catalog::new(compiled))
        }
        None => Ok(catalog::load(&super::connect(config).await?, config).await?),
    }
}

struct Asked<'a> {
    principal: &'a Result<Principal, AuthError>,
    access_point: Option<&'a CompiledAccessPoint>,
    request: &'a PresignRequest,
    ip: Option<IpAddr>,
    tls: bool,
}

fn ask(config: &Config, a: &Asked<'_>) -> (Explanation, Option<ApiError>) {
    let explained = explain::explain(&Question {
        principal: a.principal.as_ref(),
        access_point: a.access_point,
        request: a.request,
        client_ip: a.ip,
        tls: a.tls,
        require_https: config.server.require_https,
        limits: &config.limits,
        url_https: crate::explain::url_https(config),
        insecure_allowed: config.s3.allow_insecure_endpoint,
    });
    let refusal = explained.outcome.clone().err().map(ApiError::from);
    (explained, refusal)
}

fn run_one(config: &Config, access_points: &Catalog, args: &ExplainArgs) -> anyhow::Result<()> {
    let (Some(sub), Some(op), Some(target)) = (&args.sub, &args.operation, &args.target) else {
        anyhow::bail!("explain needs --sub, an operation and <access point>/<key>");
    };
    let operation: PresignOperation = serde_json::from_value(serde_json::json!(op))
        .map_err(|_| anyhow::anyhow!("operation must be get, put, delete or post, not {op:?}"))?;
    let (ap_name, key) = target
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("the target is <access point>/<key>, not {target:?}"))?;
    let mut request = PresignRequest::new(operation, key);
    request.content_type = args.content_type.clone();
    request.content_length = args.content_length;
    request.key_starts_with = args.key_starts_with.then_some(true);
    let issuers = &config.auth.issuers;
    let principal = explain::simulate(issuers, sub, &args.groups, args.issuer.as_deref(), args.mfa);
    let (explained, refusal) = ask(
        config,
        &Asked {
            principal: &principal,
            access_point: access_points.get(ap_name).map(|ap| &**ap),
            request: &request,
            ip: args.ip,
            tls: !args.plain_http,
        },
    );
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&as_json(&explained, refusal.as_ref()))?
        );
    } else {
        print!("{}", as_text(&explained, refusal.as_ref()));
    }
    match refusal {
        None => Ok(()),
        Some(e) => Err(Denied(format!("denied: {}", e.code())).into()),
    }
}

fn run_matrix(
    config: &Config,
    access_points: &Catalog,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    let cases = matrix::read(file)?;
    let mut changed = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let principal = explain::simulate(
            &config.auth.issuers,
            &case.sub,
            &case.groups,
            case.issuer.as_deref(),
            case.mfa,
        );
        let request = case.request();
        let (explained, refusal) = ask(
            config,
            &Asked {
                principal: &principal,
                access_point: access_points.get(&case.access_point).map(|ap| &**ap),
                request: &request,
                ip: case.client_ip,
                tls: case.tls,
            },
        );
        let code = refusal.as_ref().map(ApiError::code);
        if !matrix::meets(&case.expect, code) {
            let why = explained
                .steps
                .iter()
                .find(|s| s.outcome == Outcome::Fail)
                .map_or(String::new(), |s| format!(" ({}: {})", s.check, s.detail));
            changed.push(format!(
                "{}\n  - expected: {}\n  + got:      {}{why}",
                case.label(index),
                case.expect,
                matrix::written(code)
            ));
        }
    }
    if changed.is_empty() {
        println!("{}: {} cases, all as expected", file.display(), cases.len());
        Ok(())
    } else {
        for c in &changed {
            println!("{c}");
        }
        Err(Denied(format!(
            "{} of {} cases differ from {}",
            changed.len(),
            cases.len(),
            file.display()
        ))
        .into())
    }
}

fn as_json(e: &Explanation, refusal: Option<&ApiError>) -> serde_json::Value {
    serde_json::json!({
        "decision": if refusal.is_none() { "allow" } else { "deny" },
        "status": refusal.map_or(200, |r| r.problem().status),
        "code": refusal.map(ApiError::code),
        "simulated": true,
        "key": e.key,
        "expires_in": e.expires_in,
        "decided_by": e.decided_by,
        "steps": e.steps,
        "rules": e.rules,
        "limits": e.limits,
    })
}

fn as_text(e: &Explanation, refusal: Option<&ApiError>) -> String {
    let mut out = String::new();
    for s in &e.steps {
        let mark = match s.outcome {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Skipped => "  - ",
        };
        out.push_str(&format!("{mark}  {:<12} {}\n", s.check, s.detail));
    }
    for r in &e.rules {
        let yes = |b: bool| if b { "yes" } else { "no" };
        out.push_str(&format!(
            "      rule {} {:?}: issuer {}, groups {}, operation {}, keys {}, mfa {:?} -> {}{}\n",
            r.index,
            r.effect,
            yes(r.issuer),
            yes(r.groups),
            yes(r.operation),
            yes(r.keys),
            r.mfa,
            if r.applies {
                "applies"
            } else {
                "does not apply"
            },
            r.note.map_or(String::new(), |n| format!(" ({n})")),
        ));
    }
    match refusal {
        None => out.push_str(&format!(
            "allow{}\n",
            e.decided_by
                .map_or(String::new(), |i| format!(" (rule {i})"))
        )),
        Some(r) => out.push_str(&format!(
            "deny: {} {}{}\n",
            r.problem().status,
            r.code(),
            e.decided_by
                .map_or(String::new(), |i| format!(" (rule {i})"))
        )),
    }
    out
}
