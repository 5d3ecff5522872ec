//! One-time passwords from an oath users file (ocserv's
//! `plain[passwd=...,otp=FILE]`): the password, then the code in a second
//! form; openconnect's own TOTP generator fills it; HOTP codes from
//! oathtool; a code is taken once.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

const KEY_HEX: &str = "3132333435363738393031323334353637383930";

fn otp_server(net: &mut Net) -> Server {
    fs::write(
        net.dir.join("users.oath"),
        format!("# users\nHOTP/T30 alice - {KEY_HEX}\nHOTP bob - {KEY_HEX}\n"),
    )
    .unwrap();
    start_server(
        net,
        ServerOpts {
            auth_keys: "otp_file = \"users.oath\"\n".into(),
            ..Default::default()
        },
    )
}

fn hotp(counter: u64) -> String {
    must(&format!("oathtool --hotp {KEY_HEX} -c {counter}"))
        .trim()
        .to_owned()
}

/// `openconnect --authenticate` answering the forms with `answers`; the
/// cookie if it logged in.
fn authenticate(
    net: &Net,
    server: &Server,
    user: &str,
    answers: &[&str],
    extra: &str,
) -> Option<String> {
    let input = net.dir.join(format!("answers-{user}"));
    fs::write(
        &input,
        answers.iter().map(|a| format!("{a}\n")).collect::<String>(),
    )
    .unwrap();
    let o = net.exec(
        &net.client_ns[0],
        &format!(
            "sh -c 'timeout 20 openconnect --authenticate {extra} --user {user} --passwd-on-stdin --servercert {} https://{}/ < {}'",
            server.pin,
            net.server_ip(1),
            input.display()
        ),
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("COOKIE="))
        .map(str::to_owned)
}

#[test]
fn otp_file_totp_from_openconnect_hotp_from_oathtool_and_no_reuse() {
    let _serial = serial();
    let mut net = Net::new("otp", 1);
    let server = otp_server(&mut net);

    // openconnect's TOTP generator fills the second form; the tunnel works.
    let alice = start_client_with(
        &mut net,
        &server,
        1,
        "alice",
        &["test123"],
        &format!("--token-mode=totp --token-secret=0x{KEY_HEX}"),
    );
    alice.wait_connected();
    assert_eq!(
        ping_rtts(&net, &alice.ns, &server.tunnel_ip, 2, "0.2").len(),
        2
    );
    let users = server.ctl_json("show users").to_string();
    assert!(users.contains("plain+otp"), "{users}");
    // The code it used is recorded; the same code again is refused.
    let file = fs::read_to_string(net.dir.join("users.oath")).unwrap();
    let used = file
        .lines()
        .find(|l| l.starts_with("HOTP/T30\talice"))
        .and_then(|l| l.split('\t').nth(5))
        .unwrap_or_else(|| panic!("alice's line records the code:\n{file}"))
        .to_owned();
    assert!(file.starts_with("# users\n"), "other lines kept:\n{file}");
    assert_eq!(
        authenticate(&net, &server, "alice", &["test123", &used], ""),
        None
    );
    alice.signal("INT");
    alice.wait_exit(Duration::from_secs(10));

    // HOTP: counter 0, then a code three ahead (inside the window), and
    // neither of them again.
    assert!(authenticate(&net, &server, "bob", &["wonderland", &hotp(0)], "").is_some());
    assert_eq!(
        authenticate(&net, &server, "bob", &["wonderland", &hotp(0)], ""),
        None
    );
    assert!(authenticate(&net, &server, "bob", &["wonderland", &hotp(3)], "").is_some());
    assert_eq!(
        authenticate(&net, &server, "bob", &["wonderland", &hotp(2)], ""),
        None,
        "behind the counter"
    );
    // A wrong password never gets to the code; a wrong code fails.
    assert_eq!(
        authenticate(&net, &server, "bob", &["nope", "nope", "nope"], ""),
        None
    );
    assert_eq!(
        authenticate(&net, &server, "bob", &["wonderland", "000000"], ""),
        None
    );
    let log = server.log_text();
    assert!(
        log.contains("one-time password refused: a one-time password used before"),
        "{log}"
    );
    assert!(
        log.contains("one-time password refused: wrong one-time password"),
        "{log}"
    );
}
