//! The one thing certificate login needs from a client certificate: an
//! attribute of its subject (the CN, UID, OU, ...), read from the DER.
//!
//! rustls has verified the certificate against the CA before this runs, so
//! the input is well-formed in practice; the reader still checks every
//! length and returns `None` rather than trusting it.

/// An attribute type as DER OID bytes, from a name (`CN`, `UID`, `OU`,
/// `O`, `emailAddress`) or dotted numbers (`2.5.4.3`).
pub fn oid_from_text(text: &str) -> Result<Vec<u8>, String> {
    let dotted = match text.trim() {
        "CN" | "cn" => "2.5.4.3",
        "OU" | "ou" => "2.5.4.11",
        "O" | "o" => "2.5.4.10",
        "UID" | "uid" => "0.9.2342.19200300.100.1.1",
        "emailAddress" | "email" => "1.2.840.113549.1.9.1",
        t => t,
    };
    let bad = || {
        format!("expected CN, UID, OU, O, emailAddress or a dotted OID like 2.5.4.3, got {text:?}")
    };
    let arcs: Vec<u64> = dotted
        .split('.')
        .map(|a| a.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    if arcs.len() < 2 || arcs[0] > 2 || (arcs[0] < 2 && arcs[1] > 39) {
        return Err(bad());
    }
    let mut out = Vec::new();
    let first = arcs[0]
        .checked_mul(40)
        .and_then(|v| v.checked_add(arcs[1]))
        .ok_or_else(bad)?;
    for arc in std::iter::once(first).chain(arcs[2..].iter().copied()) {
        let mut groups = vec![(arc & 0x7f) as u8];
        let mut rest = arc >> 7;
        while rest > 0 {
            groups.push((rest & 0x7f) as u8 | 0x80);
            rest >>= 7;
        }
        out.extend(groups.iter().rev());
    }
    Ok(out)
}

/// One DER element: tag and contents; `rest` follows it.
struct Tlv<'a> {
    tag: u8,
    body: &'a [u8],
    rest: &'a [u8],
}

fn tlv(data: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, data) = data.split_first()?;
    let (&first, mut data) = data.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || data.len() < n {
            return None;
        }
        let len = data[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        data = &data[n..];
        len
    };
    (data.len() >= len).then(|| Tlv {
        tag,
        body: &data[..len],
        rest: &data[len..],
    })
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// The first value of attribute `oid` in the certificate's subject.
pub fn subject_attribute(cert_der: &[u8], oid: &[u8]) -> Option<String> {
    let cert = tlv(cert_der).filter(|t| t.tag == SEQUENCE)?;
    let tbs = tlv(cert.body).filter(|t| t.tag == SEQUENCE)?;
    let mut f = tlv(tbs.body)?;
    // [0] EXPLICIT version is optional.
    if f.tag == 0xa0 {
        f = tlv(f.rest)?;
    }
    // serialNumber, signature, issuer, validity, then subject.
    for _ in 0..4 {
        f = tlv(f.rest)?;
    }
    if f.tag != SEQUENCE {
        return None;
    }
    let mut rdns = f.body;
    while let Some(rdn) = tlv(rdns) {
        rdns = rdn.rest;
        if rdn.tag != SET {
            return None;
        }
        let mut atvs = rdn.body;
        while let Some(atv) = tlv(atvs) {
            atvs = atv.rest;
            let ty = tlv(atv.body).filter(|t| t.tag == OID)?;
            if ty.body == oid {
                let value = tlv(ty.rest)?;
                return decode_string(value.tag, value.body);
            }
        }
    }
    None
}

fn decode_string(tag: u8, body: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String, NumericString, VisibleString
        0x0c | 0x13 | 0x16 | 0x12 | 0x1a => String::from_utf8(body.to_vec()).ok(),
        // TeletexString: Latin-1 in practice.
        0x14 => Some(body.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UTF-16BE.
        0x1e if body.len() % 2 == 0 => {
            let units: Vec<u16> = body
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(params_names: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        for (ty, v) in params_names {
            p.distinguished_name.push(ty.clone(), *v);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn oids_encode_like_der() {
        assert_eq!(oid_from_text("CN").unwrap(), [0x55, 0x04, 0x03]);
        assert_eq!(oid_from_text("2.5.4.11").unwrap(), [0x55, 0x04, 0x0b]);
        assert_eq!(
            oid_from_text("UID").unwrap(),
            [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01]
        );
        assert_eq!(
            oid_from_text("emailAddress").unwrap(),
            [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]
        );
        for bad in ["", "cn.x", "3.1", "1", "1.40"] {
            assert!(oid_from_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_subject_attributes_not_the_issuers() {
        let der = cert(&[
            (rcgen::DnType::OrganizationName, "Example"),
            (rcgen::DnType::OrganizationalUnitName, "staff"),
            (rcgen::DnType::CommonName, "alice"),
            (
                rcgen::DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 1]),
                "alice.uid",
            ),
        ]);
        let get = |o: &str| subject_attribute(&der, &oid_from_text(o).unwrap());
        assert_eq!(get("CN").as_deref(), Some("alice"));
        assert_eq!(get("OU").as_deref(), Some("staff"));
        assert_eq!(get("UID").as_deref(), Some("alice.uid"));
        assert_eq!(get("emailAddress"), None);
    }

    #[test]
    fn truncated_or_garbage_input_is_none() {
        let der = cert(&[(rcgen::DnType::CommonName, "bob")]);
        let cn = oid_from_text("CN").unwrap();
        for cut in 0..der.len() {
            let _ = subject_attribute(&der[..cut], &cn);
        }
        assert_eq!(
            subject_attribute(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], &cn),
            None
        );
        assert_eq!(subject_attribute(b"", &cn), None);
    }
}
