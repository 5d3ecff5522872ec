//! Attribute types and values a VPN NAS sends and reads, and User-Password
//! hiding (RFC 2865 §5.2).

use super::{auth, Error, AUTHENTICATOR_LEN};

/// RFC 2865 §5.1.
pub const USER_NAME: u8 = 1;
/// RFC 2865 §5.2; hidden with [`hide_password`].
pub const USER_PASSWORD: u8 = 2;
/// RFC 2865 §5.4.
pub const NAS_IP_ADDRESS: u8 = 4;
/// RFC 2865 §5.5.
pub const NAS_PORT: u8 = 5;
/// RFC 2865 §5.6; see [`service_type`].
pub const SERVICE_TYPE: u8 = 6;
/// RFC 2865 §5.7; see [`framed_protocol`].
pub const FRAMED_PROTOCOL: u8 = 7;
/// RFC 2865 §5.8.
pub const FRAMED_IP_ADDRESS: u8 = 8;
/// RFC 2865 §5.9.
pub const FRAMED_IP_NETMASK: u8 = 9;
/// RFC 2865 §5.11.
pub const FILTER_ID: u8 = 11;
/// RFC 2865 §5.18.
pub const REPLY_MESSAGE: u8 = 18;
/// RFC 2865 §5.22: "prefix gateway metrics" text.
pub const FRAMED_ROUTE: u8 = 22;
/// RFC 2865 §5.24: echoed back unchanged after an Access-Challenge.
pub const STATE: u8 = 24;
/// RFC 2865 §5.25: echoed unchanged in accounting.
pub const CLASS: u8 = 25;
/// RFC 2865 §5.26.
pub const VENDOR_SPECIFIC: u8 = 26;
/// RFC 2865 §5.27, in seconds.
pub const SESSION_TIMEOUT: u8 = 27;
/// RFC 2865 §5.28, in seconds.
pub const IDLE_TIMEOUT: u8 = 28;
/// RFC 2865 §5.30.
pub const CALLED_STATION_ID: u8 = 30;
/// RFC 2865 §5.31: the client's address.
pub const CALLING_STATION_ID: u8 = 31;
/// RFC 2865 §5.32.
pub const NAS_IDENTIFIER: u8 = 32;
/// RFC 2866 §5.1; see [`acct_status`].
pub const ACCT_STATUS_TYPE: u8 = 40;
/// RFC 2866 §5.2, in seconds.
pub const ACCT_DELAY_TIME: u8 = 41;
/// RFC 2866 §5.3: octets from the client, modulo 2^32.
pub const ACCT_INPUT_OCTETS: u8 = 42;
/// RFC 2866 §5.4: octets to the client, modulo 2^32.
pub const ACCT_OUTPUT_OCTETS: u8 = 43;
/// RFC 2866 §5.5.
pub const ACCT_SESSION_ID: u8 = 44;
/// RFC 2866 §5.7, in seconds.
pub const ACCT_SESSION_TIME: u8 = 46;
/// RFC 2866 §5.8.
pub const ACCT_INPUT_PACKETS: u8 = 47;
/// RFC 2866 §5.9.
pub const ACCT_OUTPUT_PACKETS: u8 = 48;
/// RFC 2866 §5.10; see [`terminate_cause`].
pub const ACCT_TERMINATE_CAUSE: u8 = 49;
/// RFC 2869 §5.1: how often Acct-Input-Octets wrapped.
pub const ACCT_INPUT_GIGAWORDS: u8 = 52;
/// RFC 2869 §5.2: how often Acct-Output-Octets wrapped.
pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;
/// RFC 2869 §5.3: seconds since the Unix epoch.
pub const EVENT_TIMESTAMP: u8 = 55;
/// RFC 2865 §5.41; see [`nas_port_type`].
pub const NAS_PORT_TYPE: u8 = 61;
/// RFC 2866 §5.6; 1 = RADIUS.
pub const ACCT_AUTHENTIC: u8 = 45;
/// RFC 2869 §5.11: the client software, as ocserv sends its user agent.
pub const CONNECT_INFO: u8 = 77;
/// RFC 2869 §5.10: 0 = the answer is hidden, 1 = echoed.
pub const PROMPT: u8 = 76;
/// RFC 2869 §5.14 / RFC 3579 §3.2.
pub const MESSAGE_AUTHENTICATOR: u8 = 80;
/// RFC 3162 §2.1.
pub const NAS_IPV6_ADDRESS: u8 = 95;
/// RFC 3162 §2.5: text, as Framed-Route.
pub const FRAMED_IPV6_ROUTE: u8 = 99;
/// RFC 2869 §5.16, in seconds.
pub const ACCT_INTERIM_INTERVAL: u8 = 85;
/// RFC 3162 §2.3.
pub const FRAMED_IPV6_PREFIX: u8 = 97;
/// RFC 6911 §3.1.
pub const FRAMED_IPV6_ADDRESS: u8 = 168;
/// RFC 6911 §3.2.
pub const DNS_SERVER_IPV6_ADDRESS: u8 = 169;

/// Service-Type values (RFC 2865 §5.6).
pub mod service_type {
    /// What a VPN NAS asks for: a framed (packet) session.
    pub const FRAMED: u32 = 2;
    /// What ocserv's Access-Requests say.
    pub const AUTHENTICATE_ONLY: u32 = 8;
}

/// Framed-Protocol values (RFC 2865 §5.7).
pub mod framed_protocol {
    /// PPP, what ocserv sends for its tunnels.
    pub const PPP: u32 = 1;
}

/// NAS-Port-Type values (RFC 2865 §5.41).
pub mod nas_port_type {
    /// A port that is not a physical line.
    pub const VIRTUAL: u32 = 5;
    /// What ocserv's Access-Requests say.
    pub const ASYNC: u32 = 0;
}

/// Microsoft's vendor number and its DNS attributes (RFC 2548).
pub mod microsoft {
    pub const VENDOR: u32 = 311;
    pub const PRIMARY_DNS_SERVER: u8 = 28;
    pub const SECONDARY_DNS_SERVER: u8 = 29;
}

/// Acct-Status-Type values (RFC 2866 §5.1).
pub mod acct_status {
    /// Session start.
    pub const START: u32 = 1;
    /// Session end.
    pub const STOP: u32 = 2;
    /// Periodic update (RFC 2866 §5.1, RFC 2869 §2.1).
    pub const INTERIM_UPDATE: u32 = 3;
}

/// Acct-Terminate-Cause values (RFC 2866 §5.10).
pub mod terminate_cause {
    /// The user disconnected.
    pub const USER_REQUEST: u32 = 1;
    /// The connection dropped.
    pub const LOST_CARRIER: u32 = 2;
    /// Idle-Timeout expired.
    pub const IDLE_TIMEOUT: u32 = 4;
    /// Session-Timeout expired.
    pub const SESSION_TIMEOUT: u32 = 5;
    /// An administrator ended the session (also a Disconnect-Request).
    pub const ADMIN_RESET: u32 = 6;
    /// The NAS is shutting down.
    pub const ADMIN_REBOOT: u32 = 7;
    /// The NAS ended the session for a reason of its own.
    pub const NAS_REQUEST: u32 = 10;
}

/// Longest password that can be hidden (RFC 2865 §5.2).
pub const MAX_PASSWORD: usize = 128;

/// Hides a User-Password (RFC 2865 §5.2): the password padded with zeros
/// to a multiple of 16 bytes, each block xored with MD5(secret + previous
/// block), the first block's "previous" being the Request Authenticator.
pub fn hide_password(
    password: &[u8],
    secret: &[u8],
    authenticator: &[u8; AUTHENTICATOR_LEN],
) -> Result<Vec<u8>, Error> {
    if password.len() > MAX_PASSWORD {
        return Err(Error::PasswordTooLong(password.len()));
    }
    let padded = password.len().div_ceil(AUTHENTICATOR_LEN).max(1) * AUTHENTICATOR_LEN;
    let mut out = password.to_vec();
    out.resize(padded, 0);
    let mut previous = *authenticator;
    for block in out.chunks_exact_mut(AUTHENTICATOR_LEN) {
        let key = auth::md5(&[secret, &previous]);
        block.iter_mut().zip(key).for_each(|(b, k)| *b ^= k);
        previous.copy_from_slice(block);
    }
    Ok(out)
}

/// Recovers a hidden User-Password, trailing zero padding removed.
pub fn unhide_password(
    hidden: &[u8],
    secret: &[u8],
    authenticator: &[u8; AUTHENTICATOR_LEN],
) -> Result<Vec<u8>, Error> {
    let len = hidden.len();
    if len == 0 || len > MAX_PASSWORD || len % AUTHENTICATOR_LEN != 0 {
        return Err(Error::HiddenPassword(len));
    }
    let mut out = Vec::with_capacity(len);
    let mut previous: &[u8] = authenticator;
    for block in hidden.chunks_exact(AUTHENTICATOR_LEN) {
        let key = auth::md5(&[secret, previous]);
        out.extend(block.iter().zip(key).map(|(c, k)| c ^ k));
        previous = block;
    }
    let kept = out.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    out.truncate(kept);
    Ok(out)
}
