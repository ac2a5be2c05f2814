//! Minimal DER for the simulated device's SCEP client (written separately from the
//! server's, so that one cannot hide the other's mistakes).

pub fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 128 {
        out.push(n as u8);
    } else if n < 256 {
        out.extend([0x81, n as u8]);
    } else if n < 65_536 {
        out.extend([0x82, (n >> 8) as u8, n as u8]);
    } else {
        out.extend([0x83, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(content);
    out
}

pub fn seq(items: &[Vec<u8>]) -> Vec<u8> {
    encode(0x30, &items.concat())
}

pub fn set(items: &[Vec<u8>]) -> Vec<u8> {
    let mut sorted = items.to_vec();
    sorted.sort();
    encode(0x31, &sorted.concat())
}

pub fn oid(text: &str) -> Vec<u8> {
    let parts: Vec<u64> = text.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    let mut body = Vec::new();
    let mut push = |mut v: u64| {
        let mut bytes = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            bytes.insert(0, (v & 0x7f) as u8 | 0x80);
            v >>= 7;
        }
        body.extend(bytes);
    };
    push(parts[0] * 40 + parts[1]);
    for p in &parts[2..] {
        push(*p);
    }
    encode(0x06, &body)
}

pub fn int(value: &[u8]) -> Vec<u8> {
    let mut v: Vec<u8> = value.iter().copied().skip_while(|b| *b == 0).collect();
    if v.is_empty() || v[0] & 0x80 != 0 {
        v.insert(0, 0);
    }
    encode(0x02, &v)
}

/// A parsed element: tag, content, and the rest after it.
pub fn parse(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)? as usize;
    let (len, start) = if first < 0x80 {
        (first, 2)
    } else {
        let count = first & 0x7f;
        if count == 0 || count > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in input.get(2..2 + count)? {
            len = (len << 8) | *b as usize;
        }
        (len, 2 + count)
    };
    let content = input.get(start..start + len)?;
    Some((tag, content, &input[start + len..]))
}

/// The elements inside a constructed value.
pub fn items(content: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        let (tag, value, tail) = parse(rest)?;
        out.push((tag, value));
        rest = tail;
    }
    Some(out)
}
