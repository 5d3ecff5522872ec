//! PAM logins through a real PAM stack: pam_unix for a user the test
//! creates (its groups from the system's group database), an expired
//! account refused, and pam_oath asking a TOTP code in a second form that
//! openconnect's own generator fills. The services live in a directory of
//! the test's (pam_start_confdir), the user and group are removed at the end.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

const KEY_HEX: &str = "3132333435363738393031323334353637383930";

/// A system user and group made for one test, removed on drop.
struct SystemUser {
    name: String,
    group: String,
}

impl SystemUser {
    fn new(tag: &str, password: &str) -> Self {
        let id = std::process::id() % 100_000;
        let (name, group) = (format!("ocu{tag}{id}"), format!("ocg{tag}{id}"));
        let _ = sh(&format!(
            "userdel {name} 2>/dev/null; groupdel {group} 2>/dev/null"
        ));
        must(&format!(
            "groupadd {group} && useradd -M -N -s /usr/sbin/nologin -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 -G {group} {name} \
             && echo '{name}:{password}' | chpasswd"
        ));
        Self { name, group }
    }
}

impl Drop for SystemUser {
    fn drop(&mut self) {
        let _ = sh(&format!("userdel {} ; groupdel {}", self.name, self.group));
    }
}

fn pam_server(net: &mut Net, service: &str, stack: &str) -> Server {
    let dir = net.dir.join("pam.d");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(service), stack).unwrap();
    start_server(
        net,
        ServerOpts {
            auth_keys: "method = \"pam\"\n".into(),
            extra_config: format!(
                "[pam]\nservice = \"{service}\"\nconfig_dir = \"pam.d\"\ngid_min = 1000\n"
            ),
            ..Default::default()
        },
    )
}

#[test]
fn pam_unix_logs_a_system_user_in_with_its_groups_and_refuses_an_expired_one() {
    let _serial = serial();
    let user = SystemUser::new("u", "Sesame-1");
    let mut net = Net::new("pam", 1);
    let server = pam_server(
        &mut net,
        "ocu-unix",
        "auth required pam_unix.so nodelay\naccount required pam_unix.so\n",
    );
    let c = start_client(&mut net, &server, 1, &user.name, &["Sesame-1"]);
    c.wait_connected();
    assert_eq!(ping_rtts(&net, &c.ns, &server.tunnel_ip, 2, "0.2").len(), 2);
    let users = server.ctl_json("show users").to_string();
    assert!(
        users.contains(&user.group),
        "the group from the system: {users}"
    );
    assert!(users.contains("\"pam\""), "{users}");
    c.signal("INT");
    c.wait_exit(Duration::from_secs(10));

    // Wrong password: refused after three tries.
    let wrong = start_client(&mut net, &server, 1, &user.name, &["x", "y", "z"]);
    wrong.wait_exit(Duration::from_secs(20));
    server.wait_log("wrong password", Duration::from_secs(5));

    // An expired account: the right password, and PAM's word on it.
    must(&format!("chage -E 0 {}", user.name));
    let expired = start_client(&mut net, &server, 1, &user.name, &["Sesame-1"]);
    expired.wait_exit(Duration::from_secs(20));
    assert!(
        expired.log_text().contains("account has expired"),
        "{}",
        expired.log_text()
    );
}

#[test]
fn pam_oath_asks_a_totp_code_that_openconnect_fills() {
    let _serial = serial();
    let user = SystemUser::new("o", "Sesame-2");
    let mut net = Net::new("pamo", 1);
    let users_file = net.dir.join("users.oath");
    fs::write(&users_file, format!("HOTP/T30 {} - {KEY_HEX}\n", user.name)).unwrap();
    let server = pam_server(
        &mut net,
        "ocu-oath",
        &format!(
            "auth requisite pam_unix.so nodelay\nauth required pam_oath.so usersfile={} window=1\naccount required pam_unix.so\n",
            users_file.display()
        ),
    );
    let c = start_client_with(
        &mut net,
        &server,
        1,
        &user.name,
        &["Sesame-2"],
        &format!("--token-mode=totp --token-secret=0x{KEY_HEX}"),
    );
    c.wait_connected();
    assert!(
        c.log_text().contains("One-time password (OATH)"),
        "pam_oath's prompt reaches the user:\n{}",
        c.log_text()
    );
    assert_eq!(ping_rtts(&net, &c.ns, &server.tunnel_ip, 2, "0.2").len(), 2);
}
