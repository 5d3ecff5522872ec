//! Certificate login with the real openconnect client (`-c`/`-k`): the user
//! from the certificate's CN and the group from its OU; a certificate from
//! another CA fails the handshake; certificate and password together, or
//! either one.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// A CA and client certificates made with the openssl command line.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Self {
        let dir = dir.join("pki");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("client.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        let pki = Self { dir };
        pki.ca("ca");
        pki.ca("other-ca");
        pki
    }

    fn ca(&self, name: &str) {
        must(&format!(
            "cd {d} && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {name}.key -out {name}.pem -days 2 -subj '/CN={name}' 2>&1",
            d = self.dir.display()
        ));
    }

    /// Issues `name.pem`/`name.key` with `subject`, signed by `ca`.
    fn client(&self, name: &str, subject: &str, ca: &str) -> String {
        must(&format!(
            "cd {d} && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {name}.key -out {name}.csr -subj '{subject}' 2>&1 \
             && openssl x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial -out {name}.pem -days 2 -extfile client.ext 2>&1",
            d = self.dir.display()
        ));
        format!(
            "-c {d}/{name}.pem -k {d}/{name}.key",
            d = self.dir.display()
        )
    }

    /// Revokes `name.pem` (issued by "ca") and writes `crl.pem`, a v2 CRL.
    fn revoke(&self, name: &str) -> String {
        let d = self.dir.display();
        std::fs::write(self.dir.join("ca.cnf"), "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 2\n").unwrap();
        must(&format!(
            "cd {d} && touch index.txt && {{ [ -f crlnumber ] || echo 01 > crlnumber; }} \
             && openssl ca -config ca.cnf -keyfile ca.key -cert ca.pem -revoke {name}.pem 2>&1 \
             && openssl ca -config ca.cnf -keyfile ca.key -cert ca.pem -gencrl -out crl.pem.new 2>&1 && mv crl.pem.new crl.pem"
        ));
        self.dir.join("crl.pem").display().to_string()
    }

    fn ca_file(&self) -> String {
        self.dir.join("ca.pem").display().to_string()
    }
}

fn cert_server(net: &mut Net, pki: &Pki, method: &str) -> Server {
    start_server(
        net,
        ServerOpts {
            auth_keys: format!("method = \"{method}\"\nca_file = \"{}\"\ncert_user_oid = \"CN\"\ncert_group_oid = \"OU\"\n", pki.ca_file()),
            ..Default::default()
        },
    )
}

fn refused(c: &Client) {
    c.wait_exit(Duration::from_secs(20));
    assert!(c.env("connect").is_none(), "logged in:\n{}", c.log_text());
}

#[test]
fn certificate_login_names_the_user_and_another_ca_is_refused() {
    let _g = serial();
    let mut net = Net::new("cert", 3);
    let pki = Pki::new(&net.dir);
    let alice = pki.client("alice", "/O=Example/OU=staff/CN=alice", "ca");
    let mallory = pki.client("mallory", "/CN=alice", "other-ca");
    let server = cert_server(&mut net, &pki, "certificate");

    // The password openconnect reads at start is never asked for: the certificate alone logs alice in, in her OU's group.
    let c = start_client_with(&mut net, &server, 1, "alice", &["unused"], &alice);
    c.wait_connected();
    let log = server.log_text();
    let created = log
        .lines()
        .find(|l| l.contains("session created"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        created.contains("user=alice") && created.contains("group=staff"),
        "{created}"
    );

    // The same name from another CA fails the TLS handshake.
    refused(&start_client_with(
        &mut net,
        &server,
        2,
        "alice",
        &["unused"],
        &mallory,
    ));
    server.wait_log("invalid peer certificate", Duration::from_secs(5));
    // No certificate at all: refused at login.
    refused(&start_client(&mut net, &server, 3, "bob", &["wonderland"]));
    server.wait_log("reason=\"Certificate required", Duration::from_secs(5));
    assert_eq!(server.count_log("session created"), 1);
    assert!(alive(c.pid));
}

#[test]
fn certificate_and_password_together_or_either_one() {
    let _g = serial();
    let mut net = Net::new("certpw", 3);
    let pki = Pki::new(&net.dir);
    let alice = pki.client("alice", "/CN=alice", "ca");

    // Both required: the certificate names the user whose password counts.
    let server = cert_server(&mut net, &pki, "certificate+password");
    let ok = start_client_with(&mut net, &server, 1, "alice", &["test123"], &alice);
    ok.wait_connected();
    // Bob's password with alice's certificate is alice's wrong password.
    refused(&start_client_with(
        &mut net,
        &server,
        2,
        "bob",
        &["wonderland", "wonderland", "wonderland"],
        &alice,
    ));
    // A password without a certificate is not enough.
    refused(&start_client(&mut net, &server, 3, "alice", &["test123"]));
    server.wait_log("reason=\"Certificate required", Duration::from_secs(5));
    assert_eq!(server.count_log("session created"), 1);
    drop(ok);
    drop(server);

    // Either: the certificate without a password, or a password without one.
    let mut net = Net::new("certor", 2);
    let pki = Pki::new(&net.dir);
    let alice = pki.client("alice", "/CN=alice", "ca");
    let server = cert_server(&mut net, &pki, "certificate|password");
    start_client_with(&mut net, &server, 1, "alice", &["unused"], &alice).wait_connected();
    start_client(&mut net, &server, 2, "bob", &["wonderland"]).wait_connected();
    assert_eq!(server.count_log("session created"), 2);
}

/// `crl_file`: a revoked certificate fails the handshake while others log
/// in; a reload reads a new CRL, and a session already up stays up.
#[test]
fn revoked_certificates_are_refused_and_a_reload_reads_a_new_crl() {
    let _g = serial();
    let mut net = Net::new("crl", 3);
    let pki = Pki::new(&net.dir);
    let alice = pki.client("alice", "/CN=alice", "ca");
    let carol = pki.client("carol", "/CN=carol", "ca");
    let crl = pki.revoke("carol");
    let server = start_server(
        &mut net,
        ServerOpts {
            auth_keys: format!(
                "method = \"certificate\"\nca_file = \"{}\"\ncrl_file = \"{crl}\"\n",
                pki.ca_file()
            ),
            ..Default::default()
        },
    );
    let a = start_client_with(&mut net, &server, 1, "alice", &["unused"], &alice);
    a.wait_connected();
    refused(&start_client_with(
        &mut net,
        &server,
        2,
        "carol",
        &["unused"],
        &carol,
    ));
    server.wait_log("invalid peer certificate", Duration::from_secs(5));
    assert_eq!(server.count_log("session created"), 1);

    // alice revoked too: the reload reads the new CRL; her session stays,
    // a new login with her certificate fails.
    pki.revoke("alice");
    assert_eq!(server.ctl_json("reload")["reloaded"], true);
    assert_eq!(
        ping_rtts(&net, &net.client_ns[0], &server.tunnel_ip, 3, "0.2").len(),
        3,
        "alice's session after the reload"
    );
    refused(&start_client_with(
        &mut net,
        &server,
        3,
        "alice",
        &["unused"],
        &alice,
    ));
    assert_eq!(server.count_log("session created"), 1);
}
