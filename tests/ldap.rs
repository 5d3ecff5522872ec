//! LDAP logins against a real slapd started in the server's namespace
//! (tests/fixtures/slapd-config.sh): search-then-bind over StartTLS with
//! groups from a search, and a DN template over ldaps with groups from
//! memberOf; wrong passwords, unknown users and filter metacharacters in a
//! user name refused.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const BASE: &str = "dc=example,dc=test";

fn start_slapd(net: &mut Net) -> PathBuf {
    let dir = net.dir.join("slapd");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/slapd-config.sh");
    must(&format!(
        "sh {} {} 389 636",
        script.display(),
        dir.display()
    ));
    let log = net.dir.join("slapd.log");
    let ns = net.server_ns.clone();
    let pid = net.spawn_in(
        &ns,
        &format!(
            "/usr/sbin/slapd -d 0 -h 'ldap://127.0.0.1:389/ ldaps://127.0.0.1:636/' -f {}/slapd.conf",
            dir.display()
        ),
        &log,
    );
    wait_for(Duration::from_secs(20), "slapd listening", || {
        assert!(
            alive(pid),
            "slapd exited:\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        let o = net.exec(&ns, "ss -ltnH");
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        (out.contains("127.0.0.1:389") && out.contains("127.0.0.1:636")).then_some(())
    });
    fs::write(net.dir.join("ldap-reader"), "readerpw\n").unwrap();
    dir
}

fn ldap_server(net: &mut Net, ldap_keys: &str) -> Server {
    let groups = net.dir.join("groups");
    fs::create_dir_all(&groups).unwrap();
    fs::write(groups.join("engineering"), "route = 10.57.0.0/16\n").unwrap();
    start_server(
        net,
        ServerOpts {
            auth_keys: "method = \"ldap\"\n".into(),
            extra_config: format!("[users]\nconfig_per_group = \"groups\"\n[ldap]\n{ldap_keys}"),
            ..Default::default()
        },
    )
}

fn refused(net: &Net, server: &Server, user: &str, password: &str) -> bool {
    let o = net.exec(
        &net.client_ns[0],
        &format!(
            "sh -c 'printf \"%s\\n%s\\n%s\\n\" \"{password}\" \"{password}\" \"{password}\" | timeout 20 openconnect --authenticate --user \"{user}\" --passwd-on-stdin --servercert {} https://{}/'",
            server.pin,
            net.server_ip(1)
        ),
    );
    !String::from_utf8_lossy(&o.stdout).contains("COOKIE=")
}

#[test]
fn ldap_search_then_bind_over_starttls_with_groups_from_a_search() {
    let _serial = serial();
    let mut net = Net::new("ldap", 1);
    let dir = start_slapd(&mut net);
    let server = ldap_server(
        &mut net,
        &format!(
            "uri = \"ldap://127.0.0.1:389\"\nstart_tls = true\nca_file = \"{ca}\"\n\
             bind_dn = \"cn=reader,{BASE}\"\nbind_password_file = \"ldap-reader\"\n\
             base_dn = \"ou=people,{BASE}\"\nuser_filter = \"(&(objectClass=inetOrgPerson)(uid=%u))\"\n\
             group_base_dn = \"ou=groups,{BASE}\"\ngroup_filter = \"(&(objectClass=groupOfNames)(member=%D))\"\n",
            ca = dir.join("ca.pem").display()
        ),
    );
    let alice = start_client(&mut net, &server, 1, "alice", &["alicepw"]);
    alice.wait_connected();
    assert_eq!(
        ping_rtts(&net, &alice.ns, &server.tunnel_ip, 2, "0.2").len(),
        2
    );
    let users = server.ctl_json("show users").to_string();
    assert!(
        users.contains("\"engineering\""),
        "the group from the directory: {users}"
    );
    let env = alice.env("connect").unwrap();
    assert!(
        env.contains("=10.57.0.0"),
        "the group's file reaches the client:\n{env}"
    );
    assert!(users.contains("\"ldap\""), "{users}");
    assert!(refused(&net, &server, "alice", "wrong"));
    assert!(refused(&net, &server, "nobody", "alicepw"));
    assert!(
        refused(&net, &server, "*", "alicepw"),
        "a filter metacharacter matches nobody"
    );
    server.wait_log("wrong password", Duration::from_secs(5));
}

#[test]
fn ldap_dn_template_over_ldaps_with_groups_from_member_of() {
    let _serial = serial();
    let mut net = Net::new("ldaps", 1);
    let dir = start_slapd(&mut net);
    let server = ldap_server(
        &mut net,
        &format!(
            "uri = \"ldaps://127.0.0.1\"\nca_file = \"{ca}\"\n\
             user_dn = \"uid=%u,ou=people,{BASE}\"\n\
             bind_dn = \"cn=reader,{BASE}\"\nbind_password_file = \"ldap-reader\"\n\
             group_attribute = \"memberOf\"\n",
            ca = dir.join("ca.pem").display()
        ),
    );
    let bob = start_client(&mut net, &server, 1, "bob", &["bobpw"]);
    bob.wait_connected();
    let users = server.ctl_json("show users").to_string();
    assert!(
        users.contains("\"staff\""),
        "the group from memberOf: {users}"
    );
    assert!(refused(&net, &server, "bob", "alicepw"));
    assert!(
        refused(&net, &server, "bob,ou=people", "bobpw"),
        "a DN metacharacter names no one else"
    );
}
