//! The XML ("aggregate auth") login exchange as ocserv runs it: username
//! form, password form, then the further forms a backend asks for
//! (docs/authentication.md), success or retry; after
//! [`MAX_PASSWORD_TRIES`] wrong passwords the login fails for good.

use quick_xml::events::Event;
use quick_xml::Reader;

/// ocserv's `MAX_PASSWORD_TRIES`.
pub const MAX_PASSWORD_TRIES: u8 = 3;
/// The form's `action`; POSTs to any path are accepted anyway.
pub const FORM_ACTION: &str = "/auth";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    Init,
    AuthReply,
    Logout,
    /// No `type` or an unknown one: treated like `init`.
    Other,
}

/// What a client's POST body says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthRequest {
    pub kind: Option<RequestKind>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The answer to a follow-up prompt (`secondary_password`, or
    /// `answer` as Cisco's challenge forms name it).
    pub secondary: Option<String>,
    pub group: Option<String>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthParseError {
    #[error("invalid XML: {0}")]
    Xml(String),
    #[error("body is not UTF-8")]
    NotUtf8,
}

/// Parses a `<config-auth>` XML body, or a urlencoded form (the client's
/// no-XML fallback). An empty body is an `init`.
pub fn parse_request(body: &[u8]) -> Result<AuthRequest, AuthParseError> {
    let text = std::str::from_utf8(body).map_err(|_| AuthParseError::NotUtf8)?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Ok(AuthRequest {
            kind: Some(RequestKind::Init),
            ..Default::default()
        });
    }
    if trimmed.starts_with('<') {
        parse_xml(trimmed)
    } else {
        Ok(parse_urlencoded(trimmed))
    }
}

fn parse_xml(text: &str) -> Result<AuthRequest, AuthParseError> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut req = AuthRequest::default();
    // Element names from <config-auth> down; bounded so hostile nesting cannot grow it.
    let mut path: Vec<String> = Vec::new();
    let err = |e: quick_xml::Error| AuthParseError::Xml(e.to_string());
    loop {
        match reader.read_event().map_err(err)? {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if name == "config-auth" && path.is_empty() {
                    req.kind = Some(kind_of(&e));
                }
                if path.len() >= 32 {
                    return Err(AuthParseError::Xml("nesting too deep".into()));
                }
                path.push(name);
            }
            Event::Empty(e) if e.name().as_ref() == b"config-auth" && path.is_empty() => {
                req.kind = Some(kind_of(&e));
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Text(t) => {
                let value = t.unescape().map_err(err)?.into_owned();
                let p: Vec<&str> = path.iter().map(String::as_str).collect();
                match p.as_slice() {
                    ["config-auth", "auth", "username"] => req.username = Some(value),
                    ["config-auth", "auth", "password"] => req.password = Some(value),
                    ["config-auth", "auth", "secondary_password" | "answer"] => {
                        req.secondary = Some(value)
                    }
                    ["config-auth", "group-select"] => req.group = Some(value),
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if req.kind.is_none() {
        return Err(AuthParseError::Xml("no <config-auth> element".into()));
    }
    Ok(req)
}

fn kind_of(e: &quick_xml::events::BytesStart<'_>) -> RequestKind {
    let ty = e
        .attributes()
        .flatten()
        .find(|a| a.key.as_ref() == b"type")
        .map(|a| a.value.into_owned());
    match ty.as_deref() {
        Some(b"init") => RequestKind::Init,
        Some(b"auth-reply") => RequestKind::AuthReply,
        Some(b"logout") => RequestKind::Logout,
        _ => RequestKind::Other,
    }
}

fn parse_urlencoded(text: &str) -> AuthRequest {
    let mut req = AuthRequest {
        kind: Some(RequestKind::AuthReply),
        ..Default::default()
    };
    for pair in text.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = url_decode(v);
        match k {
            "username" => req.username = Some(v),
            "password" => req.password = Some(v),
            "secondary_password" | "answer" => req.secondary = Some(v),
            "group_list" => req.group = Some(v),
            _ => {}
        }
    }
    req
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            // Two hex digits exactly: from_str_radix alone would take "%+4".
            b'%' if i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escapes text for element content and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\n' => {}
            c => out.push(c),
        }
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Username,
    Password,
}

/// One entry of the login's group list: the name the client sends back
/// and the label it shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupOption {
    pub name: String,
    pub label: String,
}

impl GroupOption {
    /// `name` or `name[Label]`, as ocserv's `select-group` writes it.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        let (name, label) = match entry.split_once('[') {
            Some((n, rest)) => {
                let label = rest
                    .strip_suffix(']')
                    .ok_or_else(|| format!("{entry:?}: expected name[Label]"))?;
                (n.trim(), label.trim())
            }
            None => (entry, entry),
        };
        let plain = !name.is_empty()
            && !name
                .contains(|c: char| c == ',' || c == ':' || c.is_whitespace() || c.is_control());
        if !plain || label.is_empty() {
            return Err(format!(
                "{entry:?}: expected a group name without spaces, ',' or ':'"
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            label: label.to_owned(),
        })
    }
}

/// An `auth-request` document asking for one field, and offering `groups`
/// (`<select name="group_list">`) when there are any.
pub fn form_document(field: Field, message: &str, groups: &[GroupOption]) -> Vec<u8> {
    form_with_banner(field, message, groups, None)
}

/// A backend's question after the password: a RADIUS Access-Challenge's
/// Reply-Message, a PAM prompt, the one-time password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    /// Shown above the field.
    pub message: String,
    /// Typed in the clear (PAM's echo-on prompts) rather than hidden.
    pub echo: bool,
}

impl Prompt {
    /// A hidden answer to `message`.
    pub fn secret(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            echo: false,
        }
    }
}

/// A successful login: the user's groups (the first is the default) and
/// what the backend grants this session over the user's files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    pub groups: Vec<String>,
    pub grants: Grants,
    /// RADIUS Class attributes, echoed in accounting (RFC 2865 §5.25).
    pub class: Vec<Vec<u8>>,
}

/// Session settings a backend hands out (RADIUS's Access-Accept).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    pub ipv4: Option<std::net::Ipv4Addr>,
    pub ipv6: Option<std::net::Ipv6Addr>,
    pub routes: Vec<ipnet::IpNet>,
    pub dns: Vec<std::net::IpAddr>,
    /// Seconds; zero or absent: the configuration's.
    pub session_timeout: Option<u64>,
    pub idle_timeout: Option<u64>,
    pub interim_interval: Option<u64>,
}

/// The most follow-up prompts one login may take (ocserv's
/// `MAX_CHALLENGES`).
pub const MAX_PROMPTS: u32 = 16;

/// The form for the `counter`th follow-up prompt. A hidden answer is a
/// `secondary_password`, as ocserv names it: openconnect fills that field
/// from its `--token-mode` generator. The counter in the label tells
/// clients that store answers by label that this is a new question.
pub fn prompt_document(prompt: &Prompt, counter: u32) -> Vec<u8> {
    let input = if prompt.echo {
        format!(r#"<input type="text" name="answer" label="Answer{counter}:" />"#)
    } else {
        format!(r#"<input type="password" name="secondary_password" label="Password{counter}:" />"#)
    };
    form_xml(&prompt.message, &input, None)
}

fn form_xml(message: &str, input: &str, banner: Option<&str>) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<config-auth client=\"vpn\" type=\"auth-request\">\n<version who=\"sg\">0.1(1)</version>\n<auth id=\"main\">\n{banner}<message>{}</message>\n<form method=\"post\" action=\"{FORM_ACTION}\">\n{input}\n</form></auth>\n</config-auth>\n",
        xml_escape(message),
        banner = banner.map_or(String::new(), |b| format!("<banner>{}</banner>\n", xml_escape(b)))
    )
    .into_bytes()
}

/// A form with `banner` shown above it (ocserv's `pre-login-banner`).
pub fn form_with_banner(
    field: Field,
    message: &str,
    groups: &[GroupOption],
    banner: Option<&str>,
) -> Vec<u8> {
    let mut input = match field {
        Field::Username => r#"<input type="text" name="username" label="Username:" />"#.to_owned(),
        Field::Password => {
            r#"<input type="password" name="password" label="Password:" />"#.to_owned()
        }
    };
    if !groups.is_empty() {
        input.push_str("\n<select name=\"group_list\" label=\"Group:\">");
        for g in groups {
            input.push_str(&format!(
                "\n<option value=\"{}\">{}</option>",
                xml_escape(&g.name),
                xml_escape(&g.label)
            ));
        }
        input.push_str("\n</select>");
    }
    form_xml(message, &input, banner)
}

/// The `complete` document that, with the `webvpn` cookie, ends the
/// login; `banner` (ocserv's `banner`) is shown by the client.
/// `profile`: the user-profile's (file name, SHA-1), announced in a
/// `vpn-profile-manifest` for AnyConnect to fetch at /profiles/NAME.
pub fn success_document(banner: Option<&str>, profile: Option<(&str, &str)>) -> Vec<u8> {
    let banner = banner.map_or(String::new(), |b| {
        format!("<banner>{}</banner>", xml_escape(b))
    });
    let manifest = profile.map_or(String::new(), |(name, sha1)| {
        format!(
            "<config client=\"vpn\" type=\"private\"><vpn-profile-manifest><vpn rev=\"1.0\"><file type=\"profile\" service-type=\"user\"><uri>/profiles/{}</uri><hash type=\"sha1\">{}</hash></file></vpn></vpn-profile-manifest>\n</config>",
            xml_escape(name),
            xml_escape(sha1)
        )
    });
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<config-auth client=\"vpn\" type=\"complete\">\n<version who=\"sg\">0.1(1)</version>\n<auth id=\"success\">\n<title>SSL VPN Service</title>{banner}</auth>\n{manifest}</config-auth>\n").into_bytes()
}

const ASK_USERNAME: &str = "Please enter your username.";
const ASK_PASSWORD: &str = "Please enter your password.";
const LOGIN_FAILED: &str = "Login failed.\nPlease enter your password.";

/// One connection's progress through the login.
#[derive(Debug, Default)]
pub struct AuthExchange {
    username: Option<String>,
    /// The group the client picked, for this login only.
    group: Option<String>,
    /// Offered in the username form.
    groups: std::sync::Arc<[GroupOption]>,
    /// The username came from a client certificate; the client cannot
    /// change it.
    fixed_username: bool,
    failures: u8,
    /// Shown above the username form (ocserv's `pre-login-banner`).
    banner: Option<std::sync::Arc<str>>,
    /// Follow-up prompts asked so far; the one awaiting its answer.
    prompts: u32,
    asking: Option<Prompt>,
}

/// What the connection does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Answer 200 with this `auth-request` document.
    Form(Vec<u8>),
    /// Check these credentials (off the executor), then call
    /// [`AuthExchange::verified`]. `group` is the client's pick, if any;
    /// the user must be a member.
    Verify {
        username: String,
        password: String,
        group: Option<String>,
    },
    /// Hand this answer to the backend's pending prompt.
    Answer(String),
}

/// After a credential check.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Logged in: create the session and send [`success_document`].
    Success { username: String },
    /// Wrong password, tries left: answer 200 with this form.
    Retry(Vec<u8>),
    /// Out of tries: answer 401 and close.
    Failed,
}

impl AuthExchange {
    pub fn new() -> Self {
        Self::default()
    }

    /// An exchange whose username form offers `groups`.
    pub fn with_groups(groups: std::sync::Arc<[GroupOption]>) -> Self {
        Self {
            groups,
            ..Self::default()
        }
    }

    /// An exchange for the user a certificate named: it asks only for the
    /// password (the group list, if any, comes with it).
    pub fn for_user(username: String, groups: std::sync::Arc<[GroupOption]>) -> Self {
        Self {
            username: Some(username),
            groups,
            fixed_username: true,
            ..Self::default()
        }
    }

    /// Shows `banner` above the username form.
    pub fn set_banner(&mut self, banner: Option<std::sync::Arc<str>>) {
        self.banner = banner;
    }

    /// Replaces the groups offered (a list read from the password file).
    pub fn set_groups(&mut self, groups: std::sync::Arc<[GroupOption]>) {
        self.groups = groups;
    }

    /// Whether the next form is the username form.
    pub fn wants_username(&self) -> bool {
        self.username.is_none()
    }

    pub fn failures(&self) -> u8 {
        self.failures
    }

    pub fn handle(&mut self, req: AuthRequest) -> Step {
        if let Some(prompt) = &self.asking {
            // A client answering with the first form's field name is
            // answering all the same.
            return match req.secondary.or(req.password) {
                Some(answer) => {
                    self.asking = None;
                    Step::Answer(answer)
                }
                None => Step::Form(prompt_document(prompt, self.prompts)),
            };
        }
        if let Some(u) = req
            .username
            .filter(|u| !u.is_empty() && !self.fixed_username)
        {
            self.username = Some(u);
        }
        if let Some(g) = req.group.filter(|g| !g.is_empty()) {
            self.group = Some(g);
        }
        match (&self.username, req.password) {
            (Some(u), Some(p)) => Step::Verify {
                username: u.clone(),
                password: p,
                group: self.group.clone(),
            },
            (Some(_), None) if self.fixed_username => {
                Step::Form(form_document(Field::Password, ASK_PASSWORD, &self.groups))
            }
            (Some(_), None) => Step::Form(form_document(Field::Password, ASK_PASSWORD, &[])),
            (None, _) => Step::Form(form_with_banner(
                Field::Username,
                ASK_USERNAME,
                &self.groups,
                self.banner.as_deref(),
            )),
        }
    }

    pub fn verified(&mut self, ok: bool) -> Verdict {
        self.verified_with(ok, None)
    }

    /// The backend's verdict, with what it says of a refusal (a RADIUS
    /// Reply-Message) for the retry form. A refusal after a follow-up
    /// prompt ends the login: its challenge cannot be asked again.
    pub fn verified_with(&mut self, ok: bool, message: Option<&str>) -> Verdict {
        self.asking = None;
        if ok {
            if let Some(username) = self.username.take() {
                return Verdict::Success { username };
            }
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures >= MAX_PASSWORD_TRIES || self.prompts > 0 {
            Verdict::Failed
        } else {
            let message = message.filter(|m| !m.trim().is_empty()).map_or_else(
                || LOGIN_FAILED.to_owned(),
                |m| format!("{m}\n{ASK_PASSWORD}"),
            );
            Verdict::Retry(form_document(Field::Password, &message, &[]))
        }
    }

    /// The backend asks something more before its verdict: the form to
    /// answer with, or `None` when the login has had [`MAX_PROMPTS`].
    pub fn ask(&mut self, prompt: Prompt) -> Option<Vec<u8>> {
        if self.prompts >= MAX_PROMPTS {
            return None;
        }
        self.prompts += 1;
        let doc = prompt_document(&prompt, self.prompts);
        self.asking = Some(prompt);
        Some(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Bodies as captured from openconnect 9.01 (protocol/capture-*.log).
    const INIT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="init" aggregate-auth-version="2"><version who="vpn">v9.01-3</version><device-id>linux-64</device-id><capabilities><auth-method>single-sign-on-v2</auth-method><auth-method>single-sign-on-external-browser</auth-method></capabilities><group-access>https://10.78.0.1/</group-access></config-auth>"#;
    const USER: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="auth-reply" aggregate-auth-version="2"><version who="vpn">v9.01-3</version><device-id>linux-64</device-id><capabilities><auth-method>single-sign-on-v2</auth-method><auth-method>single-sign-on-external-browser</auth-method></capabilities><auth><username>alice</username></auth></config-auth>"#;
    const PASS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="auth-reply" aggregate-auth-version="2"><version who="vpn">v9.01-3</version><device-id>linux-64</device-id><capabilities><auth-method>single-sign-on-v2</auth-method><auth-method>single-sign-on-external-browser</auth-method></capabilities><auth><password>test123</password></auth></config-auth>"#;

    #[test]
    fn parses_captured_bodies() {
        let init = parse_request(INIT.as_bytes()).unwrap();
        assert_eq!(init.kind, Some(RequestKind::Init));
        assert_eq!(init.username, None);
        let user = parse_request(USER.as_bytes()).unwrap();
        assert_eq!(
            (user.kind, user.username.as_deref()),
            (Some(RequestKind::AuthReply), Some("alice"))
        );
        let pass = parse_request(PASS.as_bytes()).unwrap();
        assert_eq!(pass.password.as_deref(), Some("test123"));
    }

    #[test]
    fn escaped_and_fallback_values() {
        let x = r#"<config-auth type="auth-reply"><auth><username>a&amp;b</username><password>&lt;p&gt;</password></auth><group-select>g1</group-select></config-auth>"#;
        let r = parse_request(x.as_bytes()).unwrap();
        assert_eq!(
            (
                r.username.as_deref(),
                r.password.as_deref(),
                r.group.as_deref()
            ),
            (Some("a&b"), Some("<p>"), Some("g1"))
        );
        let f = parse_request(b"username=bob&password=p%40ss+word&group_list=g").unwrap();
        assert_eq!(
            (f.username.as_deref(), f.password.as_deref()),
            (Some("bob"), Some("p@ss word"))
        );
        assert_eq!(url_decode("100%"), "100%");
        assert_eq!(url_decode("%4"), "%4");
        assert_eq!(url_decode("%+4x"), "% 4x");
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_request(b"<config-auth><auth></config-auth>").is_err());
        assert!(parse_request(b"<other/>").is_err());
        assert!(parse_request(&[0xff, 0xfe]).is_err());
        let deep = "<config-auth>".to_string() + &"<a>".repeat(40);
        assert!(parse_request(deep.as_bytes()).is_err());
    }

    #[test]
    fn three_step_login_like_ocserv() {
        let mut ex = AuthExchange::new();
        let Step::Form(f) = ex.handle(parse_request(INIT.as_bytes()).unwrap()) else {
            panic!()
        };
        assert!(String::from_utf8(f).unwrap().contains(r#"name="username""#));
        let Step::Form(f) = ex.handle(parse_request(USER.as_bytes()).unwrap()) else {
            panic!()
        };
        assert!(String::from_utf8(f).unwrap().contains(r#"type="password""#));
        let step = ex.handle(parse_request(PASS.as_bytes()).unwrap());
        assert_eq!(
            step,
            Step::Verify {
                username: "alice".into(),
                password: "test123".into(),
                group: None
            }
        );
        assert_eq!(
            ex.verified(true),
            Verdict::Success {
                username: "alice".into()
            }
        );
    }

    #[test]
    fn three_wrong_passwords_fail_and_a_right_one_before_that_works() {
        let mut ex = AuthExchange::new();
        ex.handle(parse_request(USER.as_bytes()).unwrap());
        ex.handle(parse_request(PASS.as_bytes()).unwrap());
        let Verdict::Retry(form) = ex.verified(false) else {
            panic!()
        };
        assert!(String::from_utf8(form).unwrap().contains("Login failed."));
        ex.handle(parse_request(PASS.as_bytes()).unwrap());
        assert_eq!(
            ex.verified(true),
            Verdict::Success {
                username: "alice".into()
            }
        );

        let mut ex = AuthExchange::new();
        ex.handle(parse_request(USER.as_bytes()).unwrap());
        for _ in 0..2 {
            ex.handle(parse_request(PASS.as_bytes()).unwrap());
            assert!(matches!(ex.verified(false), Verdict::Retry(_)));
        }
        ex.handle(parse_request(PASS.as_bytes()).unwrap());
        assert_eq!(ex.verified(false), Verdict::Failed);
    }

    #[test]
    fn group_list_is_offered_with_the_username_and_the_pick_kept() {
        let groups: std::sync::Arc<[GroupOption]> = vec![
            GroupOption::parse("staff[Staff & friends]").unwrap(),
            GroupOption::parse("lab").unwrap(),
        ]
        .into();
        let mut ex = AuthExchange::with_groups(groups);
        let Step::Form(f) = ex.handle(parse_request(INIT.as_bytes()).unwrap()) else {
            panic!()
        };
        let f = String::from_utf8(f).unwrap();
        assert!(
            f.contains(r#"<select name="group_list" label="Group:">"#),
            "{f}"
        );
        assert!(
            f.contains(r#"<option value="staff">Staff &amp; friends</option>"#),
            "{f}"
        );
        assert!(f.contains(r#"<option value="lab">lab</option>"#), "{f}");
        let with_group = USER.replace("</auth>", "</auth><group-select>lab</group-select>");
        let Step::Form(f) = ex.handle(parse_request(with_group.as_bytes()).unwrap()) else {
            panic!()
        };
        assert!(
            !String::from_utf8(f).unwrap().contains("group_list"),
            "only the username form lists groups"
        );
        let step = ex.handle(parse_request(PASS.as_bytes()).unwrap());
        assert_eq!(
            step,
            Step::Verify {
                username: "alice".into(),
                password: "test123".into(),
                group: Some("lab".into())
            }
        );
    }

    #[test]
    fn a_challenge_is_a_second_form_and_its_refusal_ends_the_login() {
        let mut ex = AuthExchange::new();
        ex.handle(parse_request(USER.as_bytes()).unwrap());
        assert!(matches!(
            ex.handle(parse_request(PASS.as_bytes()).unwrap()),
            Step::Verify { .. }
        ));
        let form =
            String::from_utf8(ex.ask(Prompt::secret("Enter your OTP code")).unwrap()).unwrap();
        assert!(
            form.contains("<message>Enter your OTP code</message>"),
            "{form}"
        );
        assert!(
            form.contains(
                r#"<input type="password" name="secondary_password" label="Password1:" />"#
            ),
            "{form}"
        );
        // A body without the answer gets the same form again.
        let Step::Form(again) = ex.handle(parse_request(USER.as_bytes()).unwrap()) else {
            panic!()
        };
        assert_eq!(String::from_utf8(again).unwrap(), form);
        let otp = PASS.replace(
            "<password>test123</password>",
            "<secondary_password>123456</secondary_password>",
        );
        assert_eq!(
            ex.handle(parse_request(otp.as_bytes()).unwrap()),
            Step::Answer("123456".into())
        );
        assert_eq!(
            ex.verified_with(false, Some("Access denied")),
            Verdict::Failed
        );

        // Accepted after two prompts, the second one in the clear.
        let mut ex = AuthExchange::new();
        ex.handle(parse_request(USER.as_bytes()).unwrap());
        ex.handle(parse_request(PASS.as_bytes()).unwrap());
        ex.ask(Prompt::secret("code")).unwrap();
        ex.handle(parse_request(PASS.as_bytes()).unwrap());
        let form = ex
            .ask(Prompt {
                message: "Your PIN".into(),
                echo: true,
            })
            .unwrap();
        assert!(String::from_utf8(form)
            .unwrap()
            .contains(r#"<input type="text" name="answer" label="Answer2:" />"#));
        let answer = parse_request(b"answer=42").unwrap();
        assert_eq!(ex.handle(answer), Step::Answer("42".into()));
        assert_eq!(
            ex.verified(true),
            Verdict::Success {
                username: "alice".into()
            }
        );
    }

    #[test]
    fn prompts_are_bounded_and_a_reply_message_shows_on_the_retry() {
        let mut ex = AuthExchange::new();
        ex.handle(parse_request(USER.as_bytes()).unwrap());
        ex.handle(parse_request(PASS.as_bytes()).unwrap());
        let Verdict::Retry(form) = ex.verified_with(false, Some("Account <locked>")) else {
            panic!()
        };
        let form = String::from_utf8(form).unwrap();
        assert!(
            form.contains("<message>Account &lt;locked&gt;\nPlease enter your password.</message>"),
            "{form}"
        );
        for _ in 0..MAX_PROMPTS {
            assert!(ex.ask(Prompt::secret("again")).is_some());
        }
        assert_eq!(ex.ask(Prompt::secret("again")), None);
    }

    #[test]
    fn group_entries_parse_like_ocserv_select_group() {
        assert_eq!(
            GroupOption::parse("eng").unwrap(),
            GroupOption {
                name: "eng".into(),
                label: "eng".into()
            }
        );
        assert_eq!(
            GroupOption::parse("eng[Engineering]").unwrap().label,
            "Engineering"
        );
        for bad in ["", "a b", "a,b", "x[", "x[]", "a:b"] {
            assert!(GroupOption::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn documents_escape_text() {
        let d = String::from_utf8(form_document(Field::Password, "a<b", &[])).unwrap();
        assert!(d.contains("<message>a&lt;b</message>"));
        assert!(!d.contains("group_list"));
        assert!(String::from_utf8(success_document(None, None))
            .unwrap()
            .contains(r#"<auth id="success">"#));
        let d = String::from_utf8(success_document(None, Some(("p.xml", "AB12")))).unwrap();
        assert!(
            d.contains("<uri>/profiles/p.xml</uri><hash type=\"sha1\">AB12</hash>"),
            "{d}"
        );
    }
}
