//! FETCH data items that come from a message's bytes: ENVELOPE,
//! BODYSTRUCTURE, RFC822.* and `BODY[section]<partial>`, each an exact slice
//! of the stored copy (HEADER.FIELDS selects whole fields as received).

use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::fetch::{MessageDataItemName, Part, Section};

use crate::mime::{Entity, field_blocks};
use crate::wire::Out;

/// One content item of a FETCH response (ENVELOPE, BODY[...], RFC822...).
pub fn fetch_content(out: &mut Out, item: &MessageDataItemName<'_>, e: &Entity<'_>, raw: &[u8]) {
    match item {
        MessageDataItemName::Envelope => {
            out.raw("ENVELOPE ");
            e.envelope(out);
        }
        MessageDataItemName::BodyStructure => {
            out.raw("BODYSTRUCTURE ");
            e.structure(out, true);
        }
        MessageDataItemName::Body => {
            out.raw("BODY ");
            e.structure(out, false);
        }
        MessageDataItemName::Rfc822 => {
            out.raw("RFC822 ");
            out.literal(raw);
        }
        MessageDataItemName::Rfc822Header => {
            out.raw("RFC822.HEADER ");
            out.literal(e.header);
        }
        MessageDataItemName::Rfc822Text => {
            out.raw("RFC822.TEXT ");
            out.literal(e.body);
        }
        MessageDataItemName::BodyExt { section, partial, .. } => {
            let data = section_bytes(e, raw, section.as_ref());
            out.raw(&format!("BODY[{}]", section.as_ref().map(section_name).unwrap_or_default()));
            match partial {
                Some((start, len)) => {
                    let start = (*start as usize).min(data.len());
                    let end = start.saturating_add(len.get() as usize).min(data.len());
                    out.raw(&format!("<{start}> "));
                    out.literal(&data[start..end]);
                }
                None => {
                    out.raw(" ");
                    out.literal(&data);
                }
            }
        }
        _ => out.raw("NIL"),
    }
}

/// The bytes of a BODY[section]: always an exact slice of the message,
/// except HEADER.FIELDS which selects fields (each exactly as received).
fn section_bytes(e: &Entity<'_>, raw: &[u8], section: Option<&Section<'_>>) -> Vec<u8> {
    let part = |p: &Option<Part>| -> Option<&Entity<'_>> {
        match p {
            None => Some(e),
            Some(p) => e.locate(&p.0.as_ref().iter().map(|n| n.get()).collect::<Vec<_>>()),
        }
    };
    let pick = |p: &Option<Part>, names: &[AString<'_>], keep: bool| -> Vec<u8> {
        let Some(ent) = part(p) else { return Vec::new() };
        let target = if p.is_some() { ent.as_message() } else { ent };
        let mut v = Vec::new();
        for (name, block) in field_blocks(target.header) {
            if names.iter().any(|n| n.as_ref().trim_ascii().eq_ignore_ascii_case(name)) == keep {
                v.extend_from_slice(block);
            }
        }
        v.extend_from_slice(b"\r\n");
        v
    };
    match section {
        None => raw.to_vec(),
        Some(Section::Part(p)) => part(&Some(p.clone())).map(|x| x.body).unwrap_or_default().to_vec(),
        Some(Section::Header(p)) => part(p)
            .map(|x| if p.is_some() { x.as_message().header } else { x.header })
            .unwrap_or_default()
            .to_vec(),
        Some(Section::Text(p)) => part(p)
            .map(|x| if p.is_some() { x.as_message().body } else { x.body })
            .unwrap_or_default()
            .to_vec(),
        Some(Section::HeaderFields(p, f)) => pick(p, f.as_ref(), true),
        Some(Section::HeaderFieldsNot(p, f)) => pick(p, f.as_ref(), false),
        Some(Section::Mime(p)) => part(&Some(p.clone())).map(|x| x.header).unwrap_or_default().to_vec(),
    }
}

/// The part number a section names, if any.
pub fn section_part<'a>(s: &'a Section<'_>) -> Option<&'a Part> {
    match s {
        Section::Part(p) | Section::Mime(p) => Some(p),
        Section::Header(p)
        | Section::Text(p)
        | Section::HeaderFields(p, _)
        | Section::HeaderFieldsNot(p, _) => p.as_ref(),
    }
}

/// The section as it is echoed in the response: `1.2.HEADER.FIELDS (A B)`.
fn section_name(s: &Section<'_>) -> String {
    let part = |p: &Part| p.0.as_ref().iter().map(|n| n.to_string()).collect::<Vec<_>>().join(".");
    let prefixed = |p: &Option<Part>, what: &str| match p {
        Some(p) => format!("{}.{what}", part(p)),
        None => what.to_string(),
    };
    let list = |f: &[AString<'_>]| {
        f.iter().map(|a| String::from_utf8_lossy(a.as_ref()).into_owned()).collect::<Vec<_>>().join(" ")
    };
    match s {
        Section::Part(p) => part(p),
        Section::Header(p) => prefixed(p, "HEADER"),
        Section::Text(p) => prefixed(p, "TEXT"),
        Section::Mime(p) => format!("{}.MIME", part(p)),
        Section::HeaderFields(p, f) => prefixed(p, &format!("HEADER.FIELDS ({})", list(f.as_ref()))),
        Section::HeaderFieldsNot(p, f) => prefixed(p, &format!("HEADER.FIELDS.NOT ({})", list(f.as_ref()))),
    }
}

pub fn internal_date(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0).unwrap_or_default().format("%e-%b-%Y %H:%M:%S +0000").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_pick_whole_fields_by_name_in_any_case() {
        use imap_codec::imap_types::core::Vec1;
        let raw: &[u8] = b"Subject: a\r\n  folded\r\nfrom : x@y\r\nno colon here\r\nX-Seq: 7\r\n\r\nbody\r\n";
        let e = Entity::top(raw);
        assert_eq!(e.body, b"body\r\n");
        let names = |n: &[&'static str]| -> Vec1<AString<'static>> {
            Vec1::unvalidated(n.iter().map(|s| AString::try_from(*s).unwrap()).collect())
        };
        let fields = Section::HeaderFields(None, names(&["SUBJECT", "From"]));
        assert_eq!(section_bytes(&e, raw, Some(&fields)), b"Subject: a\r\n  folded\r\nfrom : x@y\r\n\r\n");
        let not = Section::HeaderFieldsNot(None, names(&["subject", "x-seq"]));
        assert_eq!(section_bytes(&e, raw, Some(&not)), b"from : x@y\r\nno colon here\r\n\r\n");
        let none = Section::HeaderFields(None, names(&["Date"]));
        assert_eq!(section_bytes(&e, raw, Some(&none)), b"\r\n");
        let header = Section::Header(None);
        assert_eq!(section_bytes(&e, raw, Some(&header)), &raw[..raw.len() - 6]);
    }

    #[test]
    fn internal_date_is_rfc3501() {
        assert_eq!(internal_date(0), " 1-Jan-1970 00:00:00 +0000");
    }
}
