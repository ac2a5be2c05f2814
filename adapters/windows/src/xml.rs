//! A small XML tree with limits, for SOAP envelopes and SyncML messages.
//!
//! The tree keeps document order (children are a list, never regrouped), knows elements
//! by their local names (prefixes vary between clients and do not matter here), borrows
//! names and text from the input where it can, and refuses input over its limits: total
//! size, nesting depth, element count, attributes per element and text per element. Bad
//! input is an [`XmlError`], never a panic.

use std::borrow::Cow;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// How much XML one message may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_depth: usize,
    pub max_elements: usize,
    pub max_attributes: usize,
    /// Bytes of text directly inside one element.
    pub max_text: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 512 * 1024,
            max_depth: 32,
            max_elements: 20_000,
            max_attributes: 32,
            max_text: 256 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("the document is larger than {0} bytes")]
    TooLarge(usize),
    #[error("elements are nested deeper than {0}")]
    TooDeep(usize),
    #[error("the document has more than {0} elements")]
    TooManyElements(usize),
    #[error("an element has more than {0} attributes")]
    TooManyAttributes(usize),
    #[error("an element holds more than {0} bytes of text")]
    TextTooLong(usize),
    #[error("the document is not UTF-8")]
    NotUtf8,
    #[error("malformed XML: {0}")]
    Malformed(String),
    #[error("the document has no root element")]
    Empty,
}

/// An element of a [`Document`].
#[derive(Debug)]
struct Node<'a> {
    name: Cow<'a, str>,
    attributes: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    text: Cow<'a, str>,
    children: Vec<usize>,
}

/// A parsed document; elements are addressed through [`Element`].
#[derive(Debug)]
pub struct Document<'a> {
    nodes: Vec<Node<'a>>,
}

/// One element of a document.
#[derive(Clone, Copy)]
pub struct Element<'d, 'a> {
    doc: &'d Document<'a>,
    index: usize,
}

impl std::fmt::Debug for Element<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{}>", self.name())
    }
}

impl<'a> Document<'a> {
    /// Parses `input` within `limits`.
    pub fn parse(input: &'a [u8], limits: &Limits) -> Result<Self, XmlError> {
        if input.len() > limits.max_bytes {
            return Err(XmlError::TooLarge(limits.max_bytes));
        }
        let text = std::str::from_utf8(input).map_err(|_| XmlError::NotUtf8)?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut reader = Reader::from_str(text);
        let config = reader.config_mut();
        config.check_end_names = true;
        config.trim_text(false);
        let mut nodes: Vec<Node<'a>> = Vec::with_capacity(64);
        let mut stack: Vec<usize> = Vec::with_capacity(16);
        let mut root: Option<usize> = None;
        loop {
            let event = reader
                .read_event()
                .map_err(|e| XmlError::Malformed(e.to_string()))?;
            match event {
                Event::Start(start) | Event::Empty(start) if stack.len() >= limits.max_depth => {
                    let _ = start;
                    return Err(XmlError::TooDeep(limits.max_depth));
                }
                Event::Start(start) => {
                    let index = open(text, &start, &mut nodes, &stack, &mut root, limits)?;
                    stack.push(index);
                }
                Event::Empty(start) => {
                    open(text, &start, &mut nodes, &stack, &mut root, limits)?;
                }
                Event::End(_) => {
                    stack.pop();
                }
                Event::Text(t) => {
                    if let Some(&top) = stack.last() {
                        let content = t.xml10_content();
                        append_text(&mut nodes[top], text, content, limits)?;
                    } else if !t.trim().is_empty() {
                        return Err(XmlError::Malformed("text outside the root element".into()));
                    }
                }
                Event::CData(t) => {
                    if let Some(&top) = stack.last() {
                        let content = t.xml10_content();
                        append_text(&mut nodes[top], text, content, limits)?;
                    } else {
                        return Err(XmlError::Malformed("CDATA outside the root element".into()));
                    }
                }
                Event::GeneralRef(r) => {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => c,
                        Ok(None) => match &*r.into_inner() {
                            "lt" => '<',
                            "gt" => '>',
                            "amp" => '&',
                            "apos" => '\'',
                            "quot" => '"',
                            other => {
                                return Err(XmlError::Malformed(format!(
                                    "unknown entity &{other};"
                                )));
                            }
                        },
                        Err(e) => return Err(XmlError::Malformed(e.to_string())),
                    };
                    let Some(&top) = stack.last() else {
                        return Err(XmlError::Malformed("reference outside the root".into()));
                    };
                    let mut buf = [0u8; 4];
                    let piece: &str = resolved.encode_utf8(&mut buf);
                    append_text(&mut nodes[top], text, Cow::Owned(piece.to_owned()), limits)?;
                }
                Event::DocType(_) => {
                    // Entity declarations are how XML bombs work; SOAP and SyncML need none.
                    return Err(XmlError::Malformed("DOCTYPE is not allowed".into()));
                }
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
                Event::Eof => break,
            }
        }
        if !stack.is_empty() {
            return Err(XmlError::Malformed("unclosed element".into()));
        }
        if root.is_none() {
            return Err(XmlError::Empty);
        }
        Ok(Self { nodes })
    }

    /// The root element.
    pub fn root<'d>(&'d self) -> Element<'d, 'a> {
        Element {
            doc: self,
            index: 0,
        }
    }
}

fn open<'a>(
    input: &'a str,
    start: &BytesStart<'_>,
    nodes: &mut Vec<Node<'a>>,
    stack: &[usize],
    root: &mut Option<usize>,
    limits: &Limits,
) -> Result<usize, XmlError> {
    if nodes.len() >= limits.max_elements {
        return Err(XmlError::TooManyElements(limits.max_elements));
    }
    let name = borrow_from(input, start.local_name().into_inner());
    let mut attributes = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| XmlError::Malformed(e.to_string()))?;
        if attributes.len() >= limits.max_attributes {
            return Err(XmlError::TooManyAttributes(limits.max_attributes));
        }
        let key = borrow_from(input, attribute.key.local_name().into_inner());
        let value = attribute
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| XmlError::Malformed(e.to_string()))?;
        let value = match value {
            Cow::Borrowed(v) => borrow_from(input, v),
            Cow::Owned(v) => Cow::Owned(v),
        };
        attributes.push((key, value));
    }
    let index = nodes.len();
    nodes.push(Node {
        name,
        attributes,
        text: Cow::Borrowed(""),
        children: Vec::new(),
    });
    match stack.last() {
        Some(&parent) => nodes[parent].children.push(index),
        None if root.is_none() => *root = Some(index),
        None => return Err(XmlError::Malformed("more than one root element".into())),
    }
    Ok(index)
}

fn append_text<'a>(
    node: &mut Node<'a>,
    input: &'a str,
    piece: Cow<'_, str>,
    limits: &Limits,
) -> Result<(), XmlError> {
    if node.text.len() + piece.len() > limits.max_text {
        return Err(XmlError::TextTooLong(limits.max_text));
    }
    if node.text.is_empty() {
        node.text = match piece {
            Cow::Borrowed(p) => borrow_from(input, p),
            Cow::Owned(p) => Cow::Owned(p),
        };
    } else {
        node.text.to_mut().push_str(&piece);
    }
    Ok(())
}

/// `part` as a slice of `input` when it lies inside it (no copy), else a copy.
fn borrow_from<'a>(input: &'a str, part: &str) -> Cow<'a, str> {
    let start = (part.as_ptr() as usize).wrapping_sub(input.as_ptr() as usize);
    match input.get(start..start.wrapping_add(part.len())) {
        Some(slice) if slice.as_ptr() == part.as_ptr() => Cow::Borrowed(slice),
        _ => Cow::Owned(part.to_owned()),
    }
}

impl<'d, 'a> Element<'d, 'a> {
    fn node(&self) -> &'d Node<'a> {
        &self.doc.nodes[self.index]
    }

    /// The local name (without prefix).
    pub fn name(&self) -> &'d str {
        &self.node().name
    }

    /// The text directly inside, untrimmed.
    pub fn raw_text(&self) -> &'d str {
        &self.node().text
    }

    /// The text directly inside, trimmed.
    pub fn text(&self) -> &'d str {
        self.node().text.trim()
    }

    /// An attribute by local name.
    pub fn attribute(&self, name: &str) -> Option<&'d str> {
        self.node()
            .attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| &**value)
    }

    /// Child elements in document order.
    pub fn children(&self) -> impl Iterator<Item = Element<'d, 'a>> + use<'d, 'a> {
        let doc = self.doc;
        doc.nodes[self.index]
            .children
            .iter()
            .map(move |&index| Element { doc, index })
    }

    /// The first child with this local name.
    pub fn child(&self, name: &str) -> Option<Element<'d, 'a>> {
        self.children().find(|c| c.name() == name)
    }

    /// Children with this local name, in order.
    pub fn children_named<'n>(
        &self,
        name: &'n str,
    ) -> impl Iterator<Item = Element<'d, 'a>> + use<'d, 'a, 'n> {
        self.children().filter(move |c| c.name() == name)
    }

    /// Follows a path of child names.
    pub fn path(&self, names: &[&str]) -> Option<Element<'d, 'a>> {
        let mut current = *self;
        for name in names {
            current = current.child(name)?;
        }
        Some(current)
    }

    /// The trimmed text of the child at `names`, when present.
    pub fn text_at(&self, names: &[&str]) -> Option<&'d str> {
        self.path(names).map(|e| e.text())
    }

    /// The first descendant with this local name (depth first, document order).
    pub fn find(&self, name: &str) -> Option<Element<'d, 'a>> {
        for child in self.children() {
            if child.name() == name {
                return Some(child);
            }
            if let Some(found) = child.find(name) {
                return Some(found);
            }
        }
        None
    }
}

/// Appends `text` escaped for element content or attribute values.
pub fn escape_into(out: &mut String, text: &str) {
    let mut last = 0;
    for (i, b) in text.bytes().enumerate() {
        let replacement = match b {
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'&' => "&amp;",
            b'"' => "&quot;",
            b'\'' => "&apos;",
            _ => continue,
        };
        out.push_str(&text[last..i]);
        out.push_str(replacement);
        last = i + 1;
    }
    out.push_str(&text[last..]);
}

/// `text` escaped for XML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    escape_into(&mut out, text);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Result<Document<'_>, XmlError> {
        Document::parse(xml.as_bytes(), &Limits::default())
    }

    #[test]
    fn keeps_order_and_local_names() {
        let doc =
            parse(r#"<s:E xmlns:s="x"><s:B><a>1</a><b x:k="v &amp; w">2</b><a>3</a></s:B></s:E>"#)
                .unwrap();
        let body = doc.root().child("B").unwrap();
        let names: Vec<_> = body.children().map(|c| (c.name(), c.text())).collect();
        assert_eq!(names, [("a", "1"), ("b", "2"), ("a", "3")]);
        assert_eq!(body.child("b").unwrap().attribute("k"), Some("v & w"));
    }

    #[test]
    fn resolves_references_and_cdata() {
        let doc = parse("<a>x &lt;y&gt; &#65;&#x42; <![CDATA[<raw>]]></a>").unwrap();
        assert_eq!(doc.root().text(), "x <y> AB <raw>");
    }

    #[test]
    fn refuses_what_breaks_limits() {
        let limits = Limits {
            max_bytes: 1000,
            max_depth: 3,
            max_elements: 5,
            max_attributes: 2,
            max_text: 10,
        };
        let deep = "<a><b><c><d/></c></b></a>";
        assert_eq!(
            Document::parse(deep.as_bytes(), &limits).unwrap_err(),
            XmlError::TooDeep(3)
        );
        let many = "<a><b/><b/><b/><b/><b/></a>";
        assert_eq!(
            Document::parse(many.as_bytes(), &limits).unwrap_err(),
            XmlError::TooManyElements(5)
        );
        let attrs = r#"<a x="1" y="2" z="3"/>"#;
        assert_eq!(
            Document::parse(attrs.as_bytes(), &limits).unwrap_err(),
            XmlError::TooManyAttributes(2)
        );
        let text = "<a>01234567890</a>";
        assert_eq!(
            Document::parse(text.as_bytes(), &limits).unwrap_err(),
            XmlError::TextTooLong(10)
        );
        let big = format!("<a>{}</a>", "x".repeat(2000));
        assert_eq!(
            Document::parse(big.as_bytes(), &limits).unwrap_err(),
            XmlError::TooLarge(1000)
        );
    }

    #[test]
    fn refuses_malformed_input() {
        for bad in [
            "",
            "<a>",
            "<a></b>",
            "<a/><b/>",
            "text",
            "<a>&bogus;</a>",
            "<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>",
            "<a b=\"1\" b=\"2\"/>",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            Document::parse(&[0xff, 0xfe, 0x3c], &Limits::default()).unwrap_err(),
            XmlError::NotUtf8
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(escape(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&apos;");
    }
}
