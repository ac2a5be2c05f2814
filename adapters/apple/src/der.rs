//! Just enough DER (and BER's indefinite lengths, for reading) for SCEP's CMS messages,
//! whose signed attributes openssl's bindings do not expose.

/// Most nested levels read.
const MAX_DEPTH: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed DER")]
pub struct DerError;

/// One tag-length-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u8,
    /// The contents (for indefinite lengths, without the end-of-contents marker).
    pub value: &'a [u8],
    /// The whole encoding.
    pub raw: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// The elements of a constructed value.
    pub fn children(&self) -> Result<Vec<Tlv<'a>>, DerError> {
        let mut out = Vec::new();
        let mut rest = self.value;
        while !rest.is_empty() {
            let (tlv, tail) = read(rest)?;
            out.push(tlv);
            rest = tail;
        }
        Ok(out)
    }

    pub fn child(&self, index: usize) -> Result<Tlv<'a>, DerError> {
        self.children()?.get(index).copied().ok_or(DerError)
    }
}

/// Reads one TLV; answers it and the rest of the input.
pub fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), DerError> {
    read_depth(input, 0)
}

fn read_depth(input: &[u8], depth: usize) -> Result<(Tlv<'_>, &[u8]), DerError> {
    if depth > MAX_DEPTH {
        return Err(DerError);
    }
    let tag = *input.first().ok_or(DerError)?;
    if tag & 0x1f == 0x1f {
        return Err(DerError); // multi-byte tags are not used here
    }
    let first = *input.get(1).ok_or(DerError)?;
    let (length, header) = if first < 0x80 {
        (Some(usize::from(first)), 2)
    } else if first == 0x80 {
        (None, 2)
    } else {
        let count = usize::from(first & 0x7f);
        if count > 4 {
            return Err(DerError);
        }
        let bytes = input.get(2..2 + count).ok_or(DerError)?;
        let length = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (Some(length), 2 + count)
    };
    match length {
        Some(length) => {
            let end = header.checked_add(length).ok_or(DerError)?;
            let value = input.get(header..end).ok_or(DerError)?;
            Ok((
                Tlv {
                    tag,
                    value,
                    raw: &input[..end],
                },
                &input[end..],
            ))
        }
        None => {
            if tag & 0x20 == 0 {
                return Err(DerError);
            }
            // Indefinite length: children until the end-of-contents marker.
            let mut offset = header;
            loop {
                let rest = input.get(offset..).ok_or(DerError)?;
                if rest.starts_with(&[0, 0]) {
                    let value = &input[header..offset];
                    let end = offset + 2;
                    return Ok((
                        Tlv {
                            tag,
                            value,
                            raw: &input[..end],
                        },
                        &input[end..],
                    ));
                }
                let (child, _) = read_depth(rest, depth + 1)?;
                offset += child.raw.len();
            }
        }
    }
}

/// The contents of an OCTET STRING, joining the pieces of a constructed (BER) one.
pub fn octets(tlv: &Tlv<'_>) -> Result<Vec<u8>, DerError> {
    match tlv.tag {
        0x04 => Ok(tlv.value.to_vec()),
        0x24 => {
            let mut out = Vec::new();
            for child in tlv.children()? {
                out.extend(octets(&child)?);
            }
            Ok(out)
        }
        _ => Err(DerError),
    }
}

// ---- writing ---------------------------------------------------------------------

pub fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    out.push(tag);
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
    out
}

pub fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// A SET OF, its elements sorted as DER requires.
pub fn set_of(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut sorted: Vec<&Vec<u8>> = parts.iter().collect();
    sorted.sort();
    let joined: Vec<u8> = sorted.into_iter().flatten().copied().collect();
    tlv(0x31, &joined)
}

pub fn integer_u64(value: u64) -> Vec<u8> {
    integer_bytes(&value.to_be_bytes())
}

/// An INTEGER from unsigned big-endian bytes.
pub fn integer_bytes(bytes: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = {
        let skip = bytes
            .iter()
            .take_while(|b| **b == 0)
            .count()
            .min(bytes.len().saturating_sub(1));
        bytes[skip..].to_vec()
    };
    let mut value = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        value.push(0);
    }
    value.extend(trimmed);
    tlv(0x02, &value)
}

pub fn octet_string(value: &[u8]) -> Vec<u8> {
    tlv(0x04, value)
}

pub fn printable_string(value: &str) -> Vec<u8> {
    tlv(0x13, value.as_bytes())
}

pub fn null() -> Vec<u8> {
    vec![0x05, 0x00]
}

/// Explicit context tag `[n]`, constructed.
pub fn context(n: u8, value: &[u8]) -> Vec<u8> {
    tlv(0xa0 | n, value)
}

/// An OBJECT IDENTIFIER from its dotted form.
pub fn oid(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted.split('.').filter_map(|a| a.parse().ok()).collect();
    let mut body = Vec::new();
    if arcs.len() >= 2 {
        encode_arc(&mut body, arcs[0] * 40 + arcs[1]);
        for arc in &arcs[2..] {
            encode_arc(&mut body, *arc);
        }
    }
    tlv(0x06, &body)
}

fn encode_arc(out: &mut Vec<u8>, mut arc: u64) {
    let mut stack = vec![(arc & 0x7f) as u8];
    arc >>= 7;
    while arc > 0 {
        stack.push(((arc & 0x7f) as u8) | 0x80);
        arc >>= 7;
    }
    out.extend(stack.iter().rev());
}

/// Whether `tlv` is the OBJECT IDENTIFIER `dotted`.
pub fn is_oid(tlv: &Tlv<'_>, dotted: &str) -> bool {
    tlv.raw == oid(dotted).as_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let encoded = sequence(&[
            &integer_u64(300),
            &octet_string(&[1; 200]),
            &oid("1.2.840.113549.1.7.2"),
        ]);
        let (outer, rest) = read(&encoded).unwrap();
        assert!(rest.is_empty());
        let children = outer.children().unwrap();
        assert_eq!(children.len(), 3);
        assert_eq!(children[0].value, &[0x01, 0x2c]);
        assert_eq!(children[1].value.len(), 200);
        assert_eq!(
            children[2].raw,
            &[
                0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02
            ]
        );
        assert!(is_oid(&children[2], "1.2.840.113549.1.7.2"));
    }

    #[test]
    fn integers_stay_positive() {
        assert_eq!(integer_bytes(&[0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(integer_bytes(&[0x00, 0x00, 0x7f]), vec![0x02, 0x01, 0x7f]);
        assert_eq!(integer_u64(0), vec![0x02, 0x01, 0x00]);
    }

    #[test]
    fn indefinite_lengths_read() {
        let ber = [
            0x30, 0x80, 0x04, 0x01, 0xaa, 0x24, 0x80, 0x04, 0x01, 0xbb, 0x00, 0x00, 0x00, 0x00,
        ];
        let (outer, rest) = read(&ber).unwrap();
        assert!(rest.is_empty());
        let children = outer.children().unwrap();
        assert_eq!(octets(&children[1]).unwrap(), vec![0xbb]);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(read(&[]).is_err());
        assert!(read(&[0x30, 0x05, 0x01]).is_err());
        assert!(read(&[0x30, 0x89, 1, 1, 1, 1, 1, 1, 1, 1, 1]).is_err());
        let deep: Vec<u8> = std::iter::repeat_n([0x30u8, 0x80], 40).flatten().collect();
        assert!(read(&deep).is_err());
    }
}
