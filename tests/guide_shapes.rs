//! The guides cannot show what the API does not do. In the user guides, every curl command to a
//! presignd path names an operation of `openapi/openapi.yaml` and sends a body its request
//! schema accepts; every ```json block says which shape it is, with an annotation on the line
//! before it (or one blank line above it), and matches that shape:
//!
//! - `<!-- shape: request METHOD /path/template -->`: the operation's request body;
//! - `<!-- shape: response METHOD /path/template STATUS -->`: that response's JSON body;
//! - `<!-- shape: schema SchemaName -->`: `#/components/schemas/SchemaName` (webhook payloads);
//! - `<!-- shape: none (why) -->`: not an API shape (a bucket policy, a partial fragment).
//!
//! The JSON a ```console block prints after a `$ curl` to presignd is the documented response
//! too. The guides' `…` elisions are allowed where they hide no shape: an elided string keeps
//! its type (`ELIDABLE_FORMATS`), an elided array element is dropped (`elide`). Nothing here
//! runs the service: the contract itself is checked against the service by
//! tests/openapi_contract.rs.

use serde_json::{Value, json};

/// The markdown files whose examples are checked, relative to the crate root.
const GUIDES: &[&str] = &[
    "docs/guides/web-gallery.md",
    "docs/guides/mobile-uploads.md",
    "docs/guides/premium-downloads.md",
    "docs/guides/identity-providers.md",
    "docs/uploads.md",
];

/// Values for the shell variables curl bodies use (`SIZE`: the mobile guide's video), so that
/// a body is validated as the shell would send it. A body using a variable missing here
/// fails: add it with a value plausible for its name.
const VARS: &[(&str, &str)] = &[
    ("FILE", "video.mp4"),
    ("SIZE", "47185920"),
    // Built with jq in docs/uploads.md from the ETags S3 answered.
    (
        "PARTS",
        r#"[{"part_number": 1, "etag": "\"b54357faf0632cce46e942fa68356b38\""}]"#,
    ),
];

/// The contract's string formats a guide may elide (`"https://…"`, `"…"` for a time).
const ELIDABLE_FORMATS: &[&str] = &["uri", "uri-reference", "date-time"];

/// The guides' elisions, taken out before validation: an array element `"…"` stands for more
/// elements like its neighbours (`"parts": [{…part 1…}, "…", {…part 6…}]`). Elided members
/// (`"…": "…"`) make a partial object, which is annotated `none` instead.
fn elide(v: &Value) -> Value {
    match v {
        Value::Array(items) => items
            .iter()
            .filter(|item| item.as_str() != Some("…"))
            .map(elide)
            .collect(),
        Value::Object(members) => members.iter().map(|(k, v)| (k.clone(), elide(v))).collect(),
        other => other.clone(),
    }
}

/// One line per schema error, with where in the instance it is; `oneOf`/`anyOf` failures list
/// why each branch failed (else a batch result would only say "not valid under any").
fn describe(e: &jsonschema::ValidationError<'_>, depth: usize, out: &mut Vec<String>) {
    use jsonschema::error::ValidationErrorKind as Kind;
    let pad = "  ".repeat(depth);
    let at = e.instance_path().to_string();
    match e.kind() {
        Kind::OneOfNotValid { context } | Kind::AnyOf { context } => {
            out.push(format!("{pad}at {at:?}: matches none of the alternatives:"));
            for (n, branch) in context.iter().enumerate() {
                out.push(format!("{pad}  alternative {n}:"));
                for sub in branch {
                    describe(sub, depth + 2, out);
                }
            }
        }
        _ => out.push(format!("{pad}at {at:?}: {e}")),
    }
}

// ---------------------------------------------------------------------------------------------
// The contract

struct Contract {
    doc: Value,
}

impl Contract {
    fn load() -> Contract {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.yaml");
        let text = std::fs::read_to_string(path).expect("read openapi.yaml");
        let doc: Value = serde_yaml_ng::from_str(&text).expect("openapi.yaml is YAML");
        assert_eq!(doc["openapi"], "3.1.0");
        Contract { doc }
    }

    /// Follows local `$ref`s (`#/components/...`).
    fn resolve<'a>(&'a self, mut v: &'a Value) -> Result<&'a Value, String> {
        while let Some(r) = v.get("$ref").and_then(Value::as_str) {
            let pointer = r
                .strip_prefix('#')
                .ok_or_else(|| format!("non-local $ref {r}"))?;
            v = self
                .doc
                .pointer(pointer)
                .ok_or_else(|| format!("dangling $ref {r}"))?;
        }
        Ok(v)
    }

    /// Whether `path` is one of presignd's: under `/v1/` or `/g/`, or a literal path of the
    /// contract (`/healthz`, `/readyz`, …). Anything else (an S3 or webhook URL) is not ours.
    fn is_presignd_path(&self, path: &str) -> bool {
        path.starts_with("/v1/") || path.starts_with("/g/") || self.doc["paths"].get(path).is_some()
    }

    /// The `paths` template that `path` names. `{param}` segments match any one segment, and of
    /// several matches the one with a literal segment first wins (`…/uploads/verify` over
    /// `…/uploads/{upload_id}`), as in the router.
    fn route(&self, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.split('/').collect();
        let paths = self.doc["paths"].as_object()?;
        paths
            .keys()
            .filter_map(|template| {
                let parts: Vec<&str> = template.split('/').collect();
                if parts.len() != segments.len() {
                    return None;
                }
                let mut literal = Vec::with_capacity(parts.len());
                for (t, s) in parts.iter().zip(&segments) {
                    if t.starts_with('{') && t.ends_with('}') {
                        if s.is_empty() {
                            return None;
                        }
                        literal.push(false);
                    } else if t == s {
                        literal.push(true);
                    } else {
                        return None;
                    }
                }
                Some((literal, template))
            })
            .max()
            .map(|(_, template)| template.clone())
    }

    fn operation(&self, method: &str, template: &str) -> Result<&Value, String> {
        let item = self.doc["paths"]
            .get(template)
            .ok_or_else(|| format!("{template} is not a path of the contract"))?;
        // HEAD is answered wherever GET is (tests/openapi_contract.rs); it is no operation.
        let method = if method == "HEAD" { "get" } else { method };
        let op = &item[method.to_ascii_lowercase()];
        if op.is_object() {
            Ok(op)
        } else {
            Err(format!(
                "{method} {template} is not an operation of the contract"
            ))
        }
    }

    /// The operation's `application/json` request body schema, and whether a body is required.
    fn request_schema(&self, method: &str, template: &str) -> Result<(&Value, bool), String> {
        let op = self.operation(method, template)?;
        let Some(body) = op.get("requestBody") else {
            return Err(format!("{method} {template} takes no request body"));
        };
        let body = self.resolve(body)?;
        let schema = body["content"]["application/json"]
            .get("schema")
            .ok_or_else(|| format!("{method} {template} takes no application/json body"))?;
        Ok((schema, body["required"] == true))
    }

    /// The JSON schema of the operation's response `status` (or its `NXX` class, or
    /// `default`), `application/json` or, for problems, `application/problem+json`.
    fn response_schema(
        &self,
        method: &str,
        template: &str,
        status: &str,
    ) -> Result<&Value, String> {
        let op = self.operation(method, template)?;
        let class = format!("{}XX", &status[..1.min(status.len())]);
        let documented = [status, class.as_str(), "default"]
            .into_iter()
            .find_map(|s| op["responses"].get(s))
            .ok_or_else(|| format!("{method} {template}: status {status} is not documented"))?;
        let content = &self.resolve(documented)?["content"];
        ["application/json", "application/problem+json"]
            .into_iter()
            .find_map(|media| content[media].get("schema"))
            .ok_or_else(|| format!("{method} {template} {status} has no JSON body"))
    }

    /// The status of the operation's one 2xx response with a JSON body: what `curl -s` prints.
    fn success_status(&self, method: &str, template: &str) -> Result<String, String> {
        let op = self.operation(method, template)?;
        let statuses: Vec<&String> = op["responses"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(status, _)| status.starts_with('2'))
            .filter(|(status, _)| self.response_schema(method, template, status).is_ok())
            .map(|(status, _)| status)
            .collect();
        match statuses.as_slice() {
            [one] => Ok(one.to_string()),
            _ => Err(format!(
                "{method} {template}: {} 2xx JSON responses ({statuses:?}): show the output in a \
                 ```json block with a `response` annotation instead",
                statuses.len()
            )),
        }
    }

    /// How `instance` fails `schema` (which may `$ref` the components), validated as
    /// tests/openapi_contract.rs does, formats included: empty when it matches. Elisions
    /// (`…`) are taken out first (`elide`).
    fn errors(&self, schema: &Value, instance: &Value) -> Vec<String> {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        let mut options = jsonschema::draft202012::options().should_validate_formats(true);
        // An elided string (`"https://…"`, `"expires_at": "…"`) keeps its type but cannot
        // have its format: the built-in check applies to every other string.
        for format in ELIDABLE_FORMATS {
            let builtin = jsonschema::draft202012::options()
                .should_validate_formats(true)
                .build(&json!({ "format": format }))
                .expect("a format-only schema compiles");
            options = options.with_format(*format, move |s: &str| {
                s.contains('…') || builtin.is_valid(&Value::String(s.to_string()))
            });
        }
        let validator = match options.build(&root) {
            Ok(v) => v,
            Err(e) => return vec![format!("the schema does not compile: {e}")],
        };
        let mut out = Vec::new();
        for e in validator.iter_errors(&elide(instance)) {
            describe(&e, 0, &mut out);
        }
        out
    }

    /// `Err` with the schema errors, indented under `what`, when `instance` does not match.
    fn check(&self, schema: &Value, instance: &Value, what: &str) -> Result<(), String> {
        let errors = self.errors(schema, instance);
        if errors.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{what} does not match the contract:\n    {}",
            errors.join("\n    ")
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Markdown: fenced blocks and their annotations

/// A fenced code block: its language, the 0-based index of its opening line, and its lines.
struct Fence {
    lang: String,
    open: usize,
    lines: Vec<String>,
}

/// The fenced blocks of `text` (```` ``` ```` fences, indented ones in lists included).
fn fences(lines: &[&str]) -> Result<Vec<Fence>, String> {
    let mut fences = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        let ticks = line.chars().take_while(|&c| c == '`').count();
        if ticks < 3 {
            i += 1;
            continue;
        }
        let lang = line[ticks..]
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        let open = i;
        let mut body = Vec::new();
        i += 1;
        loop {
            let Some(line) = lines.get(i) else {
                return Err(format!("{}: unclosed ``` fence", open + 1));
            };
            let closing = line.trim();
            if closing.len() >= ticks && closing.chars().all(|c| c == '`') {
                break;
            }
            body.push(line.to_string());
            i += 1;
        }
        fences.push(Fence {
            lang,
            open,
            lines: body,
        });
        i += 1;
    }
    Ok(fences)
}

/// What a ```json block's annotation says it is.
enum Shape {
    /// `request METHOD /path`
    Request(String, String),
    /// `response METHOD /path STATUS`
    Response(String, String, String),
    /// `schema Name`
    Schema(String),
    /// `none (why)`
    None,
}

/// The `<!-- shape: … -->` annotation of the fence opening at `open`: on the line before it,
/// or above one blank line. `Ok(None)` when there is none; `Err` when it is malformed.
fn annotation(lines: &[&str], open: usize) -> Result<Option<(usize, Shape)>, String> {
    let above = |n: usize| open.checked_sub(n).map(|i| (i, lines[i].trim()));
    let found = match above(1) {
        Some((_, "")) => above(2),
        other => other,
    };
    let Some((at, line)) = found else {
        return Ok(None);
    };
    let Some(inner) = line
        .strip_prefix("<!--")
        .and_then(|l| l.strip_suffix("-->"))
        .and_then(|l| l.trim().strip_prefix("shape:"))
    else {
        return Ok(None);
    };
    let words: Vec<String> = inner.split_whitespace().map(String::from).collect();
    let why = inner.trim().trim_start_matches("none").trim();
    let shape = match words.as_slice() {
        [kind, m, p] if kind == "request" => Shape::Request(m.clone(), p.clone()),
        [kind, m, p, s] if kind == "response" => Shape::Response(m.clone(), p.clone(), s.clone()),
        [kind, name] if kind == "schema" => Shape::Schema(name.clone()),
        [kind, ..]
            if kind == "none" && why.len() > 2 && why.starts_with('(') && why.ends_with(')') =>
        {
            Shape::None
        }
        _ => {
            return Err(format!(
                "{}: malformed annotation {line:?}: `request METHOD /path`, `response METHOD \
                 /path STATUS`, `schema Name` or `none (why)`",
                at + 1
            ));
        }
    };
    Ok(Some((at, shape)))
}

// ---------------------------------------------------------------------------------------------
// Shell: just enough of sh's word splitting to read the guides' curl commands

/// A part of a shell word: literal text (quotes removed), a `$NAME`/`${NAME}` expansion, or
/// another expansion (`$(…)`, `$((…))`, `$1`) that no table can stand for.
#[derive(Clone)]
enum Piece {
    Text(String),
    Var(String),
    Other(String),
}

#[derive(Clone, Default)]
struct Word(Vec<Piece>);

impl Word {
    fn push(&mut self, c: char) {
        match self.0.last_mut() {
            Some(Piece::Text(s)) => s.push(c),
            _ => self.0.push(Piece::Text(c.to_string())),
        }
    }

    /// As written, expansions unexpanded (`$API/v1/…`).
    fn literal(&self) -> String {
        self.0
            .iter()
            .map(|p| match p {
                Piece::Text(s) | Piece::Other(s) => s.clone(),
                Piece::Var(name) => format!("${name}"),
            })
            .collect()
    }

    /// As the shell would pass it, with the variables of `VARS`.
    fn expand(&self) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(s) => out.push_str(s),
                Piece::Var(name) => match VARS.iter().find(|(n, _)| n == name) {
                    Some((_, value)) => out.push_str(value),
                    None => return Err(format!("${name} is not in VARS: add a plausible value")),
                },
                Piece::Other(s) => return Err(format!("{s} cannot be expanded here")),
            }
        }
        Ok(out)
    }
}

/// A simple command: its words (redirections dropped) and the 0-based line it starts on,
/// counted from the start of the text given to `commands`.
struct Command {
    line: usize,
    words: Vec<Word>,
}

/// Collects words into commands: a separator (newline, `|`, `;`, `&&`, …) ends one, and a
/// redirection (`>`, `<`, `<<`) drops the word after it.
#[derive(Default)]
struct Commands {
    out: Vec<Command>,
    ended: bool,
    redirect: bool,
}

impl Commands {
    fn word(&mut self, word: Option<Word>, line: usize) {
        let Some(word) = word else { return };
        if std::mem::take(&mut self.redirect) {
            return;
        }
        match self.out.last_mut() {
            Some(cmd) if !self.ended => cmd.words.push(word),
            _ => {
                self.out.push(Command {
                    line,
                    words: vec![word],
                });
                self.ended = false;
            }
        }
    }

    fn operator(&mut self, op: &str) {
        if op.starts_with(['>', '<']) {
            self.redirect = true;
        } else {
            self.ended = true;
        }
    }
}

/// The snippet ends inside quotes or after a trailing backslash: a console command continues on
/// the next line, a shell block is broken.
struct Unterminated;

/// Splits a snippet into simple commands.
fn commands(text: &str) -> Result<Vec<Command>, Unterminated> {
    let chars: Vec<char> = text.chars().collect();
    let mut cmds = Commands::default();
    let mut word: Option<Word> = None;
    let mut word_line = 0;
    let mut line = 0;
    let mut heredoc: Option<String> = None;
    let mut i = 0;

    while i < chars.len() {
        let c = chars[i];
        let at_word_start = word.is_none();
        if at_word_start {
            word_line = line;
        }
        match c {
            ' ' | '\t' => cmds.word(word.take(), word_line),
            '\\' if chars.get(i + 1) == Some(&'\n') => {
                line += 1;
                i += 1;
            }
            '\\' => {
                let Some(&next) = chars.get(i + 1) else {
                    return Err(Unterminated);
                };
                word.get_or_insert_default().push(next);
                i += 1;
            }
            '\n' => {
                cmds.word(word.take(), word_line);
                cmds.operator("\n");
                line += 1;
                // A here-document's lines are its input, not commands.
                if let Some(delimiter) = heredoc.take() {
                    while i + 1 < chars.len() {
                        let end = chars[i + 1..]
                            .iter()
                            .position(|&c| c == '\n')
                            .map_or(chars.len(), |p| i + 1 + p);
                        let body: String = chars[i + 1..end].iter().collect();
                        i = end;
                        line += 1;
                        if body.trim() == delimiter {
                            break;
                        }
                    }
                }
            }
            '#' if at_word_start => {
                while i + 1 < chars.len() && chars[i + 1] != '\n' {
                    i += 1;
                }
            }
            '\'' => {
                let w = word.get_or_insert_default();
                loop {
                    i += 1;
                    match chars.get(i) {
                        None => return Err(Unterminated),
                        Some('\'') => break,
                        Some(&c) => {
                            line += usize::from(c == '\n');
                            w.push(c);
                        }
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_default();
                loop {
                    i += 1;
                    match chars.get(i) {
                        None => return Err(Unterminated),
                        Some('"') => break,
                        Some('\\') => match chars.get(i + 1) {
                            None => return Err(Unterminated),
                            Some('\n') => {
                                line += 1;
                                i += 1;
                            }
                            Some(&e @ ('$' | '`' | '"' | '\\')) => {
                                w.push(e);
                                i += 1;
                            }
                            Some(_) => w.push('\\'),
                        },
                        Some('$') => i = expansion(&chars, i, w, &mut line)?,
                        Some(&c) => {
                            line += usize::from(c == '\n');
                            w.push(c);
                        }
                    }
                }
            }
            '$' => {
                i = expansion(&chars, i, word.get_or_insert_default(), &mut line)?;
            }
            '|' | ';' | '&' | '>' | '<' | '(' | ')' => {
                // `2>`: the digits are a file descriptor, not a word.
                if let Some(w) = &word
                    && c == '>'
                    && !w.literal().is_empty()
                    && w.literal().chars().all(|c| c.is_ascii_digit())
                {
                    word = None;
                }
                cmds.word(word.take(), word_line);
                let mut op = c.to_string();
                while let Some(&n) = chars.get(i + 1)
                    && matches!(
                        (c, n),
                        ('|', '|') | ('&', '&') | ('>', '>' | '&') | ('<', '<')
                    )
                {
                    op.push(n);
                    i += 1;
                }
                if op == "<<" {
                    // `<<'YAML'`, `<<-EOF`: remember the delimiter, quotes removed.
                    let rest: String = chars[i + 1..].iter().take_while(|&&c| c != '\n').collect();
                    let delimiter = rest
                        .trim_start_matches('-')
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .trim_matches(|c| c == '\'' || c == '"');
                    heredoc = Some(delimiter.to_string());
                }
                cmds.operator(&op);
            }
            c => word.get_or_insert_default().push(c),
        }
        i += 1;
    }
    cmds.word(word.take(), word_line);

    Ok(cmds.out)
}

/// Reads the expansion starting at `chars[at] == '$'` into `w`; returns the index of its last
/// character.
fn expansion(
    chars: &[char],
    at: usize,
    w: &mut Word,
    line: &mut usize,
) -> Result<usize, Unterminated> {
    let name_char = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
    match chars.get(at + 1) {
        Some('{') => {
            let end = chars[at..]
                .iter()
                .position(|&c| c == '}')
                .ok_or(Unterminated)?
                + at;
            let inner: String = chars[at + 2..end].iter().collect();
            if !inner.is_empty() && inner.chars().all(|c| name_char(&c)) {
                w.0.push(Piece::Var(inner));
            } else {
                w.0.push(Piece::Other(chars[at..=end].iter().collect()));
            }
            Ok(end)
        }
        Some('(') => {
            // `$(…)` and `$((…))`: up to the matching parenthesis, quotes respected.
            let mut depth = 0;
            let mut quote: Option<char> = None;
            let mut i = at + 1;
            loop {
                let Some(&c) = chars.get(i) else {
                    return Err(Unterminated);
                };
                *line += usize::from(c == '\n');
                match (quote, c) {
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), _) => {}
                    (None, '\'' | '"') => quote = Some(c),
                    (None, '(') => depth += 1,
                    (None, ')') => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            w.0.push(Piece::Other(chars[at..=i].iter().collect()));
            Ok(i)
        }
        Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
            let len = chars[at + 1..].iter().take_while(|c| name_char(c)).count();
            w.0.push(Piece::Var(chars[at + 1..=at + len].iter().collect()));
            Ok(at + len)
        }
        Some(&c @ ('0'..='9' | '?' | '$' | '#' | '@' | '*' | '!')) => {
            w.0.push(Piece::Other(format!("${c}")));
            Ok(at + 1)
        }
        _ => {
            w.push('$');
            Ok(at)
        }
    }
}

/// What a curl command asks: method, the URL's path (scheme, host and query removed; a
/// leading variable such as `$API` is the host), and the `-d` body.
struct Curl {
    method: String,
    path: String,
    body: Option<Word>,
}

/// The curl invocation in `cmd`, if it is one.
fn curl(cmd: &Command) -> Option<Result<Curl, String>> {
    let start = cmd.words.iter().position(|w| w.literal() == "curl")?;
    Some(parse_curl(&cmd.words[start + 1..]))
}

fn parse_curl(args: &[Word]) -> Result<Curl, String> {
    // Short options that take an argument (attached, `-XPOST`, or as the next word).
    const SHORT_ARG: &str = "XHdoDuwTAebcmFEKrCtyYzQ";
    const LONG_ARG: &str = "--request --header --output --dump-header --user --write-out \
        --upload-file --user-agent --referer --cookie --cookie-jar --max-time --connect-timeout \
        --retry --form --cacert --cert --key --url --data --data-raw --data-binary --data-ascii \
        --data-urlencode --json --resolve --proxy --oauth2-bearer";
    let mut method: Option<String> = None;
    let mut head = false;
    let mut implied_post = false;
    let mut body: Option<Word> = None;
    let mut urls: Vec<Word> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let lit = args[i].literal();
        let next = |i: usize| {
            args.get(i + 1)
                .cloned()
                .ok_or_else(|| format!("{lit} without its argument"))
        };
        if lit.starts_with("--") {
            let value = if LONG_ARG.split_whitespace().any(|o| o == lit) {
                let v = next(i)?;
                i += 1;
                Some(v)
            } else {
                None
            };
            match (lit.as_str(), value) {
                ("--request", Some(v)) => method = Some(v.literal()),
                ("--head", _) => head = true,
                ("--url", Some(v)) => urls.push(v),
                (
                    "--data" | "--data-raw" | "--data-binary" | "--data-ascii" | "--json",
                    Some(v),
                ) => {
                    body = Some(v);
                    implied_post = true;
                }
                ("--data-urlencode" | "--form" | "--upload-file", _) => implied_post = true,
                _ => {}
            }
        } else if lit.len() > 1 && lit.starts_with('-') {
            // A cluster of short options: `-sS`, `-si`, `-sSX POST`.
            for (k, flag) in lit.char_indices().skip(1) {
                if !SHORT_ARG.contains(flag) {
                    head |= flag == 'I';
                    continue;
                }
                let attached = &lit[k + 1..];
                let value = if attached.is_empty() {
                    i += 1;
                    args.get(i)
                        .cloned()
                        .ok_or_else(|| format!("-{flag} without its argument"))?
                } else {
                    // Only literal text can be attached in the guides' commands.
                    Word(vec![Piece::Text(attached.to_string())])
                };
                match flag {
                    'X' => method = Some(value.literal()),
                    'd' => {
                        body = Some(value);
                        implied_post = true;
                    }
                    'F' | 'T' => implied_post = true,
                    _ => {}
                }
                break;
            }
        } else {
            urls.push(args[i].clone());
        }
        i += 1;
    }
    let url = match urls.as_slice() {
        [url] => url,
        [] => return Err("curl without a URL".into()),
        _ => return Err("curl with several URLs".into()),
    };
    let method = method.unwrap_or_else(|| {
        if head {
            "HEAD".into()
        } else if implied_post {
            "POST".into()
        } else {
            "GET".into()
        }
    });
    Ok(Curl {
        method: method.to_ascii_uppercase(),
        path: url_path(url),
        body,
    })
}

/// The path of a curl URL: `https://api.example.com/v1/x?y` and `$API/v1/x` are `/v1/x`;
/// `"$url"` (a presigned URL from a variable) has none.
fn url_path(url: &Word) -> String {
    let rest = match url.0.first() {
        // A variable for the scheme and host.
        Some(Piece::Var(_) | Piece::Other(_)) => Word(url.0[1..].to_vec()).literal(),
        _ => {
            let lit = url.literal();
            let after_scheme = lit.split_once("://").map_or(lit.as_str(), |(_, r)| r);
            after_scheme
                .find('/')
                .map_or(String::new(), |i| after_scheme[i..].to_string())
        }
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    rest[..end].to_string()
}

// ---------------------------------------------------------------------------------------------
// Checking one markdown file

#[derive(Default)]
struct Report {
    /// curl commands to presignd paths, checked.
    curls: usize,
    /// curl commands to other hosts (S3, webhook receivers), ignored.
    other_curls: usize,
    /// ```json blocks validated against a shape.
    json_blocks: usize,
    /// ```json blocks annotated `none`.
    none_blocks: usize,
    /// ```console outputs of presignd curls, validated as responses.
    console_outputs: usize,
    failures: Vec<String>,
}

/// Checks every example of the markdown `text`; `file` names it in failures (`file:line`).
fn check_markdown(contract: &Contract, file: &str, text: &str) -> Report {
    let mut report = Report::default();
    let lines: Vec<&str> = text.lines().collect();
    let fences = match fences(&lines) {
        Ok(f) => f,
        Err(e) => {
            report.failures.push(format!("{file}:{e}"));
            return report;
        }
    };
    let mut annotations_used = Vec::new();
    for fence in &fences {
        let at = |line: usize| format!("{file}:{}", line + 1);
        match fence.lang.as_str() {
            "json" => match annotation(&lines, fence.open) {
                Err(e) => report.failures.push(format!("{file}:{e}")),
                Ok(None) => report.failures.push(format!(
                    "{}: ```json block without a `<!-- shape: … -->` annotation on the line \
                     before it (request, response, schema or none)",
                    at(fence.open)
                )),
                Ok(Some((line, shape))) => {
                    annotations_used.push(line);
                    match check_json_block(contract, &shape, &fence.lines.join("\n")) {
                        Ok(true) => report.json_blocks += 1,
                        Ok(false) => report.none_blocks += 1,
                        Err(e) => report.failures.push(format!(
                            "{}: {}: {e}",
                            at(fence.open),
                            lines[line].trim()
                        )),
                    }
                }
            },
            "sh" | "bash" | "shell" => {
                let first = fence.open + 1;
                match commands(&fence.lines.join("\n")) {
                    Ok(cmds) => {
                        for cmd in cmds {
                            check_command(contract, &cmd, &at(first + cmd.line), None, &mut report);
                        }
                    }
                    Err(Unterminated) => report.failures.push(format!(
                        "{}: the shell block ends inside quotes or after a trailing backslash",
                        at(fence.open)
                    )),
                }
            }
            "console" => check_console(contract, fence, file, &mut report),
            _ => {}
        }
    }
    // An annotation that no ```json block follows is a leftover or a typo.
    for (i, line) in lines.iter().enumerate() {
        if line.contains("<!-- shape:") && !annotations_used.contains(&i) {
            report.failures.push(format!(
                "{file}:{}: shape annotation not directly above a ```json block",
                i + 1
            ));
        }
    }
    report
}

/// `Ok(true)` when the block matched its shape, `Ok(false)` for `none`.
fn check_json_block(contract: &Contract, shape: &Shape, text: &str) -> Result<bool, String> {
    let schema = match shape {
        Shape::None => return Ok(false),
        Shape::Request(method, path) => contract.request_schema(method, path)?.0.clone(),
        Shape::Response(method, path, status) => {
            contract.response_schema(method, path, status)?.clone()
        }
        Shape::Schema(name) => {
            if contract.doc["components"]["schemas"].get(name).is_none() {
                return Err(format!("no schema {name} in #/components/schemas"));
            }
            json!({ "$ref": format!("#/components/schemas/{name}") })
        }
    };
    let instance: Value = serde_json::from_str(text).map_err(|e| {
        format!("not valid JSON ({e}): fix it, or annotate it `<!-- shape: none (why) -->`")
    })?;
    contract.check(&schema, &instance, "the block")?;
    Ok(true)
}

/// Checks `cmd` if it is a curl to presignd: its operation, its body, and `output` (what a
/// console block shows after it) as the operation's response.
fn check_command(
    contract: &Contract,
    cmd: &Command,
    at: &str,
    output: Option<&str>,
    report: &mut Report,
) {
    let Some(parsed) = curl(cmd) else {
        return;
    };
    let c = match parsed {
        Ok(c) => c,
        Err(e) => {
            report.failures.push(format!("{at}: {e}"));
            return;
        }
    };
    if !contract.is_presignd_path(&c.path) {
        report.other_curls += 1;
        return;
    }
    report.curls += 1;
    let what = format!("{at}: curl {} {}", c.method, c.path);
    let Some(template) = contract.route(&c.path) else {
        report.failures.push(format!(
            "{what}: no path of the contract matches {}",
            c.path
        ));
        return;
    };
    if let Err(e) = contract.operation(&c.method, &template) {
        report.failures.push(format!("{what}: {e}"));
        return;
    }
    let mut errors = Vec::new();
    match (&c.body, contract.request_schema(&c.method, &template)) {
        (None, Ok((_, true))) => {
            errors.push("the operation requires a body; the curl sends none".into())
        }
        (None, _) => {}
        (Some(_), Err(e)) => errors.push(e),
        (Some(body), Ok((schema, _))) => {
            let checked = body
                .expand()
                .and_then(|text| {
                    serde_json::from_str::<Value>(&text)
                        .map_err(|e| format!("the body is not JSON ({e}): {text}"))
                })
                .and_then(|instance| contract.check(schema, &instance, "the request body"));
            errors.extend(checked.err());
        }
    }
    if let Some(output) = output.filter(|o| !o.trim().is_empty()) {
        let checked = contract
            .success_status(&c.method, &template)
            .and_then(|status| contract.response_schema(&c.method, &template, &status))
            .and_then(|schema| {
                let instance: Value = serde_json::from_str(output).map_err(|e| {
                    format!("the output shown is not a JSON body ({e}): show it in a ```json block")
                })?;
                contract.check(schema, &instance, "the output shown")
            });
        match checked {
            Ok(()) => report.console_outputs += 1,
            Err(e) => errors.push(e),
        }
    }
    for e in errors {
        report.failures.push(format!("{what} ({template}): {e}"));
    }
}

/// A console block: `$ ` lines are commands (continued while a quote is open or a line ends
/// with a backslash), the lines up to the next `$ ` their output.
fn check_console(contract: &Contract, fence: &Fence, file: &str, report: &mut Report) {
    let lines = &fence.lines;
    let mut k = 0;
    while k < lines.len() {
        let Some(command) = lines[k].trim_start().strip_prefix("$ ") else {
            k += 1;
            continue;
        };
        let first = fence.open + 1 + k;
        let mut text = command.to_string();
        k += 1;
        let cmds = loop {
            match commands(&text) {
                Ok(cmds) => break cmds,
                Err(Unterminated) if k < lines.len() => {
                    text = format!("{text}\n{}", lines[k]);
                    k += 1;
                }
                Err(Unterminated) => {
                    report.failures.push(format!(
                        "{file}:{}: the command never ends (an open quote?)",
                        first + 1
                    ));
                    break Vec::new();
                }
            }
        };
        let start = k;
        while k < lines.len() && !lines[k].trim_start().starts_with("$ ") {
            k += 1;
        }
        let output = lines[start..k].join("\n");
        for cmd in &cmds {
            // The output of a lone command (`a | b` prints b's: not checked then).
            let out = (cmds.len() == 1).then_some(output.as_str());
            let at = format!("{file}:{}", first + cmd.line + 1);
            check_command(contract, cmd, &at, out, report);
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[test]
fn guide_examples_match_the_contract() {
    let contract = Contract::load();
    let root = env!("CARGO_MANIFEST_DIR");
    let mut failures = Vec::new();
    let (mut curls, mut blocks, mut outputs) = (0, 0, 0);
    for file in GUIDES {
        let text = std::fs::read_to_string(format!("{root}/{file}"))
            .unwrap_or_else(|e| panic!("read {file}: {e}"));
        let r = check_markdown(&contract, file, &text);
        println!(
            "{file}: {} presignd curl commands ({} to other hosts ignored), {} json blocks \
             checked ({} marked none), {} console outputs checked",
            r.curls, r.other_curls, r.json_blocks, r.none_blocks, r.console_outputs
        );
        curls += r.curls;
        blocks += r.json_blocks;
        outputs += r.console_outputs;
        failures.extend(r.failures);
    }
    assert!(
        failures.is_empty(),
        "{} guide examples do not match openapi/openapi.yaml:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // A parser that silently finds nothing must not pass.
    assert!(curls >= 10, "only {curls} curl commands to presignd found");
    assert!(blocks >= 12, "only {blocks} json blocks checked");
    assert!(outputs >= 3, "only {outputs} console outputs checked");
}

/// The check can fail: a field the API rejects, an unknown path, a method the path does not
/// take, an unannotated block and a response shape the API never returns are all reported,
/// with their line; a curl to S3 is left alone.
#[test]
fn wrong_examples_are_rejected() {
    let contract = Contract::load();
    let md = r#"# A bad guide

```sh
curl -s https://api.example.com/v1/access-points/gallery/presign \
  -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"operation": "put", "key": "a", "bogus_field": 1}'
curl -s "$API/v1/access-points/gallery/presigned" -d '{"operation": "get", "key": "a"}'
curl -s -X DELETE "$API/v1/presign/batch"
curl -s -X PUT --data-binary @photo.jpg "$url"
```

```json
{"operation": "get", "key": "a"}
```

<!-- shape: response POST /v1/access-points/{name}/presign 200 -->
```json
{"url": "https://example.com/x", "method": "GET"}
```
"#;
    let r = check_markdown(&contract, "bad.md", md);
    let all = r.failures.join("\n");
    let expect = |line: &str, needle: &str| {
        assert!(
            r.failures
                .iter()
                .any(|f| f.starts_with(&format!("bad.md:{line}:")) && f.contains(needle)),
            "no failure at bad.md:{line} mentioning {needle:?} in:\n{all}"
        );
    };
    expect("4", "bogus_field");
    expect(
        "7",
        "no path of the contract matches /v1/access-points/gallery/presigned",
    );
    expect("8", "DELETE /v1/presign/batch is not an operation");
    expect("12", "without a `<!-- shape: … -->` annotation");
    expect("17", "\"expires_at\" is a required property");
    assert_eq!(r.failures.len(), 5, "{all}");
    assert_eq!((r.curls, r.other_curls), (3, 1));
}
