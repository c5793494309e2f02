//! Key patterns with IAM's wildcard semantics: `*` is any sequence (including `/`), `?` is
//! exactly one character, `${jwt:sub}` is the caller's subject as literal text.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `*`
    Any,
    /// `?`
    One,
    /// `${jwt:sub}`
    Sub,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPattern {
    source: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("pattern must not be empty")]
    Empty,
    #[error("pattern must not start with '/' (patterns are relative to the prefix)")]
    LeadingSlash,
    #[error("unknown policy variable ${{{0}}}: the only variable is ${{jwt:sub}}")]
    UnknownVariable(String),
    #[error("unterminated '${{' in pattern")]
    UnterminatedVariable,
    #[error("pattern contains a control character (U+{0:04X})")]
    ControlChar(u32),
}

/// One pattern element after substituting the subject.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Item {
    Char(char),
    Any,
    One,
}

impl KeyPattern {
    pub fn parse(pattern: &str) -> Result<KeyPattern, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        if pattern.starts_with('/') {
            return Err(GlobError::LeadingSlash);
        }
        let mut tokens = Vec::with_capacity(pattern.len());
        let mut rest = pattern;
        while let Some(c) = rest.chars().next() {
            if let Some(after) = rest.strip_prefix("${") {
                let end = after.find('}').ok_or(GlobError::UnterminatedVariable)?;
                tokens.push(match &after[..end] {
                    "jwt:sub" => Token::Sub,
                    // IAM's escapes for literal special characters.
                    "*" => Token::Char('*'),
                    "?" => Token::Char('?'),
                    "$" => Token::Char('$'),
                    other => return Err(GlobError::UnknownVariable(other.to_string())),
                });
                rest = &after[end + 1..];
                continue;
            }
            if c.is_control() {
                return Err(GlobError::ControlChar(u32::from(c)));
            }
            tokens.push(match c {
                '*' => Token::Any,
                '?' => Token::One,
                c => Token::Char(c),
            });
            rest = &rest[c.len_utf8()..];
        }
        Ok(KeyPattern {
            source: pattern.to_string(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn uses_subject(&self) -> bool {
        self.tokens.contains(&Token::Sub)
    }

    /// Does `key` (relative to the prefix) match, with `${jwt:sub}` replaced by `sub`?
    ///
    /// A pattern that uses `${jwt:sub}` never matches for a subject it cannot hold (see
    /// [`subject_usable`]): otherwise `${jwt:sub}*` would become `*` for an empty one, and a
    /// subject `bob/public` would reach into `bob`'s folder. (A deny rule treats such a
    /// subject the other way round: see `policy::evaluate`.)
    pub fn matches(&self, key: &str, sub: &str) -> bool {
        if self.uses_subject() && !subject_usable(sub) {
            return false;
        }
        if let Some(decided) = self.literal_start(key, sub) {
            return decided;
        }
        let key: Vec<char> = key.chars().collect();
        wildcard_match(&self.items(sub), &key, &mut 0)
    }

    /// The pattern with `${jwt:sub}` expanded. The subject is literal text: its `*` and `?`
    /// match only themselves.
    fn items(&self, sub: &str) -> Vec<Item> {
        let mut items = Vec::with_capacity(self.tokens.len() + sub.len());
        for t in &self.tokens {
            match t {
                Token::Char(c) => items.push(Item::Char(*c)),
                Token::Any => items.push(Item::Any),
                Token::One => items.push(Item::One),
                Token::Sub => items.extend(sub.chars().map(Item::Char)),
            }
        }
        items
    }

    /// The pattern's literal start (characters and the subject, up to the first wildcard) must
    /// begin the key. Checked without allocating, this refuses most keys before the full match
    /// (hot: a policy evaluation tries every rule's patterns). `Some` when it decides: a
    /// mismatch, or a pattern without wildcards; `None` when the full match must decide.
    fn literal_start(&self, key: &str, sub: &str) -> Option<bool> {
        let mut rest = key;
        for t in &self.tokens {
            let after = match t {
                Token::Char(c) => rest.strip_prefix(*c),
                Token::Sub => rest.strip_prefix(sub),
                Token::Any | Token::One => return None,
            };
            match after {
                Some(r) => rest = r,
                None => return Some(false),
            }
        }
        Some(rest.is_empty())
    }

    /// Does the pattern match `prefix + s` for *every* string `s`? Used to grant an upload
    /// whose key the client completes (a POST policy's `starts-with`). Sound rather than
    /// complete: true only for patterns ending in `*` whose part before that `*` matches some
    /// start of `prefix` — then the `*` absorbs the rest of the prefix and any completion.
    pub fn matches_every_extension(&self, prefix: &str, sub: &str) -> bool {
        matches!(self.tokens.last(), Some(Token::Any)) && self.matches(prefix, sub)
    }

    /// Could the pattern match `prefix + s` for *some* string `s`? Used so that a deny rule
    /// that could apply to any completion refuses a `starts-with` upload. Exact: every
    /// remaining pattern suffix matches some string, so it suffices that the pattern can
    /// consume all of `prefix`.
    pub fn matches_some_extension(&self, prefix: &str, sub: &str) -> bool {
        if self.uses_subject() && !subject_usable(sub) {
            return false;
        }
        let items = self.items(sub);
        // The set of pattern positions reachable after the characters read so far (an NFA
        // simulation: O(len(prefix) * len(pattern))).
        let close = |live: &mut Vec<bool>| {
            for i in 0..items.len() {
                if live[i] && items[i] == Item::Any {
                    live[i + 1] = true;
                }
            }
        };
        let mut live = vec![false; items.len() + 1];
        live[0] = true;
        close(&mut live);
        for c in prefix.chars() {
            let mut next = vec![false; items.len() + 1];
            for (i, item) in items.iter().enumerate() {
                if !live[i] {
                    continue;
                }
                match item {
                    Item::Any => next[i] = true,
                    Item::One => next[i + 1] = true,
                    Item::Char(x) if *x == c => next[i + 1] = true,
                    Item::Char(_) => {}
                }
            }
            close(&mut next);
            if !next.contains(&true) {
                return false;
            }
            live = next;
        }
        true
    }
}

/// Can `sub` stand for `${jwt:sub}`? Not when empty, and not when it holds `/`: a key
/// pattern's `${jwt:sub}/*` is one folder per user, and a subject with a `/` would name a
/// folder inside another user's (`bob/public` inside `bob`).
pub fn subject_usable(sub: &str) -> bool {
    !sub.is_empty() && !sub.contains('/')
}

/// The classic two-pointer wildcard match: O(len(pattern) * len(key)) in the worst case,
/// never exponential. On a mismatch it retries from the last `*` one character further,
/// which is enough because an earlier `*` can never need to absorb more once a later one
/// has matched.
/// `steps` counts loop iterations so a test can check the bound without timing anything.
fn wildcard_match(pattern: &[Item], key: &[char], steps: &mut usize) -> bool {
    let (mut p, mut k) = (0, 0);
    // (pattern index after the last `*`, key index that `*` currently extends to)
    let mut star: Option<(usize, usize)> = None;
    while k < key.len() {
        *steps += 1;
        match pattern.get(p) {
            Some(Item::Any) => {
                star = Some((p + 1, k));
                p += 1;
            }
            Some(Item::One) => {
                p += 1;
                k += 1;
            }
            Some(Item::Char(c)) if *c == key[k] => {
                p += 1;
                k += 1;
            }
            _ => match star {
                Some((sp, sk)) => {
                    star = Some((sp, sk + 1));
                    p = sp;
                    k = sk + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|i| *i == Item::Any)
}

impl fmt::Display for KeyPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, key: &str, sub: &str) -> bool {
        KeyPattern::parse(pattern).expect(pattern).matches(key, sub)
    }

    #[test]
    fn star_matches_any_sequence_including_slash() {
        assert!(m("*", "a/b/c", "u"));
        assert!(m("photos/*", "photos/2024/x.png", "u"));
        assert!(m("photos/*", "photos/", "u"));
        assert!(!m("photos/*", "photo/x", "u"));
        assert!(m("*.png", "a/b.png", "u"));
        assert!(!m("*.png", "a/b.png.exe", "u"));
        assert!(m("a*b*c", "aXXbYYc", "u"));
        assert!(!m("a*b*c", "aXXbYY", "u"));
    }

    #[test]
    fn question_mark_matches_exactly_one_character() {
        assert!(m("a?c", "abc", "u"));
        assert!(m("a?c", "a/c", "u"));
        assert!(m("a?c", "aéc", "u"));
        assert!(!m("a?c", "ac", "u"));
        assert!(!m("a?c", "abbc", "u"));
    }

    #[test]
    fn literal_pattern_matches_only_itself() {
        assert!(m("a/b.txt", "a/b.txt", "u"));
        assert!(!m("a/b.txt", "a/b.txt2", "u"));
        assert!(!m("a/b.txt", "a/b.tx", "u"));
    }

    #[test]
    fn subject_confines_to_own_folder() {
        assert!(m("${jwt:sub}/*", "alice/x.png", "alice"));
        assert!(!m("${jwt:sub}/*", "alice2/x", "alice"));
        assert!(!m("${jwt:sub}/*", "bob/x", "alice"));
        assert!(!m("${jwt:sub}/*", "alice", "alice"));
        assert!(m("users/${jwt:sub}", "users/alice", "alice"));
    }

    #[test]
    fn subject_wildcards_are_literal() {
        assert!(!m("${jwt:sub}/*", "bob/x", "*"));
        // A subject with `/` would widen the folder into another user's: no match at all.
        assert!(!m("${jwt:sub}/*", "bob/public/x", "bob/public"));
        assert!(!m("${jwt:sub}", "a/b", "a/b"));
        assert!(
            m("bob/*", "bob/public/x", "bob/public"),
            "literal patterns are unaffected"
        );
        assert!(m("${jwt:sub}/*", "*/x", "*"));
        assert!(!m("${jwt:sub}/*", "b/x", "?"));
        assert!(m("${jwt:sub}/*", "?/x", "?"));
        assert!(!m("${jwt:sub}", "anything", "*"));
    }

    #[test]
    fn empty_subject_never_matches_a_subject_pattern() {
        assert!(!m("${jwt:sub}*", "anything", ""));
        assert!(!m("${jwt:sub}", "", ""));
        assert!(m("*", "anything", ""));
    }

    #[test]
    fn iam_escapes_are_literal() {
        assert!(m("a${*}", "a*", "u"));
        assert!(!m("a${*}", "ab", "u"));
        assert!(m("${?}${$}", "?$", "u"));
    }

    #[test]
    fn parse_errors() {
        assert_eq!(KeyPattern::parse(""), Err(GlobError::Empty));
        assert_eq!(KeyPattern::parse("/x/*"), Err(GlobError::LeadingSlash));
        assert_eq!(
            KeyPattern::parse("${aws:username}/*"),
            Err(GlobError::UnknownVariable("aws:username".into()))
        );
        assert_eq!(
            KeyPattern::parse("${jwt:email}"),
            Err(GlobError::UnknownVariable("jwt:email".into()))
        );
        assert_eq!(
            KeyPattern::parse("${jwt:sub"),
            Err(GlobError::UnterminatedVariable)
        );
        assert_eq!(KeyPattern::parse("a\nb"), Err(GlobError::ControlChar(0x0a)));
        // A lone '$' or '{' is literal.
        assert!(m("a$b{c}", "a$b{c}", "u"));
    }

    #[test]
    fn extensions_of_a_prefix() {
        let p = |s: &str| KeyPattern::parse(s).expect(s);
        // Every completion of `alice/` is under `${jwt:sub}/*` for alice, none for bob.
        assert!(p("${jwt:sub}/*").matches_every_extension("alice/", "alice"));
        assert!(p("${jwt:sub}/*").matches_every_extension("alice/photos/", "alice"));
        assert!(!p("${jwt:sub}/*").matches_every_extension("alice", "alice"));
        assert!(!p("${jwt:sub}/*").matches_every_extension("ali", "alice"));
        assert!(!p("${jwt:sub}/*").matches_every_extension("bob/", "alice"));
        assert!(!p("${jwt:sub}/*").matches_every_extension("alice/", ""));
        // Not every completion ends in .png.
        assert!(!p("*.png").matches_every_extension("a/", "u"));
        assert!(p("a?c*").matches_every_extension("abcdef", "u"));
        assert!(!p("a?c*").matches_every_extension("ab", "u"));

        assert!(p("*.png").matches_some_extension("a/", "u"));
        assert!(p("${jwt:sub}/private/*").matches_some_extension("alice/", "alice"));
        assert!(p("${jwt:sub}/private/*").matches_some_extension("al", "alice"));
        assert!(!p("${jwt:sub}/private/*").matches_some_extension("alice/public/", "alice"));
        assert!(!p("${jwt:sub}/private/*").matches_some_extension("bob/", "alice"));
        assert!(!p("x").matches_some_extension("xy", "u"));
        assert!(p("x").matches_some_extension("x", "u"));
        assert!(!p("${jwt:sub}*").matches_some_extension("a", ""));
    }

    proptest::proptest! {
        /// `matches_every_extension` never claims more than `matches` grants, and
        /// `matches_some_extension` never misses a completion that `matches` accepts.
        #[test]
        fn extension_checks_agree_with_matching(
            pattern in "([ab*?]|\\$\\{jwt:sub\\})([ab/*?]|\\$\\{jwt:sub\\}){0,7}",
            prefix in "[ab/]{0,6}",
            suffix in "[ab/*?]{0,6}",
            sub in "[ab]{0,2}",
        ) {
            let p = KeyPattern::parse(&pattern).expect("generated pattern");
            let key = format!("{prefix}{suffix}");
            if p.matches_every_extension(&prefix, &sub) {
                proptest::prop_assert!(p.matches(&key, &sub), "{pattern} {key}");
            }
            if p.matches(&key, &sub) {
                proptest::prop_assert!(p.matches_some_extension(&prefix, &sub), "{pattern} {key}");
            }
        }
    }

    /// Loop iterations for matching `pattern` (no `${jwt:sub}`) against `key`.
    fn steps(pattern: &str, key: &str) -> (bool, usize) {
        let p = KeyPattern::parse(pattern).expect(pattern);
        let items: Vec<Item> = p
            .tokens
            .iter()
            .map(|t| match t {
                Token::Char(c) => Item::Char(*c),
                Token::Any => Item::Any,
                Token::One => Item::One,
                Token::Sub => unreachable!("no subject in these patterns"),
            })
            .collect();
        let key: Vec<char> = key.chars().collect();
        let mut n = 0;
        let matched = wildcard_match(&items, &key, &mut n);
        (matched, n)
    }

    #[test]
    fn adversarial_patterns_take_polynomial_steps() {
        let key = "a".repeat(1000);
        let many = format!("{}b", "*a".repeat(50));
        for (pattern, want) in [
            ("*a*a*a*a*a*b", false),
            (many.as_str(), false),
            ("*a*a*a*a*a*", true),
            ("*?*?*?*?b", false),
        ] {
            let (matched, n) = steps(pattern, &key);
            assert_eq!(matched, want, "{pattern}");
            // Backtracking matchers take ~C(1000, 5) steps here; this one stays within
            // (pattern + 1) * (key + 1).
            let bound = (pattern.len() + 1) * (key.len() + 1);
            assert!(n <= bound, "{pattern}: {n} steps > {bound}");
        }
    }
}
