//! The commands on the selected folder's messages: FETCH, STORE, SEARCH,
//! COPY/MOVE (with release), EXPUNGE.

use std::sync::Arc;

use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName};
use imap_codec::imap_types::flag::{StoreResponse, StoreType};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::SequenceSet;

use super::{RELEASE, Selected, Session};
use crate::fetch::{fetch_content, internal_date, section_part};
use crate::mime::Entity;
use crate::search::{self, Candidate, in_set};
use crate::wire::Out;

impl Session {
    /// Indices into the selected folder that a sequence set names.
    fn resolve(&self, set: &SequenceSet, uid: bool) -> Vec<usize> {
        let Some(sel) = &self.selected else { return Vec::new() };
        let max_seq = sel.msgs.len() as u32;
        let max_uid = sel.msgs.last().map_or(0, |m| m.uid);
        sel.msgs
            .iter()
            .enumerate()
            .filter(
                |(i, m)| if uid { in_set(set, m.uid, max_uid) } else { in_set(set, *i as u32 + 1, max_seq) },
            )
            .map(|(i, _)| i)
            .collect()
    }

    pub(super) async fn fetch(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        items: MacroOrMessageDataItemNames<'_>,
        uid: bool,
    ) {
        let expanded;
        let mut items = match items {
            MacroOrMessageDataItemNames::Macro(m) => {
                expanded = m;
                expanded.expand()
            }
            MacroOrMessageDataItemNames::MessageDataItemNames(v) => v,
        };
        if uid && !items.contains(&MessageDataItemName::Uid) {
            items.insert(0, MessageDataItemName::Uid);
        }
        let needs_bytes = items.iter().any(|i| {
            matches!(
                i,
                MessageDataItemName::Envelope
                    | MessageDataItemName::BodyStructure
                    | MessageDataItemName::Body
                    | MessageDataItemName::BodyExt { .. }
                    | MessageDataItemName::Rfc822
                    | MessageDataItemName::Rfc822Header
                    | MessageDataItemName::Rfc822Text
            )
        });
        let sets_seen = items.iter().any(|i| {
            matches!(
                i,
                MessageDataItemName::BodyExt { peek: false, .. }
                    | MessageDataItemName::Rfc822
                    | MessageDataItemName::Rfc822Text
            )
        });
        let needs_parts = items.iter().any(|i| match i {
            MessageDataItemName::BodyStructure | MessageDataItemName::Body => true,
            MessageDataItemName::BodyExt { section: Some(s), .. } => section_part(s).is_some(),
            _ => false,
        });
        let indices = self.resolve(set, uid);
        let mut seen_updates = Vec::new();
        // In chunks: a chunk's blobs are read in one query, the next chunk's
        // while this one's responses are made and sent (the database's
        // thread and this one each take about half of a big FETCH).
        let chunks: Vec<&[usize]> = indices.chunks(256).collect();
        let read_ahead = |sel: &Selected, chunk: Option<&&[usize]>| {
            if !needs_bytes {
                return None;
            }
            let hashes: Vec<String> = chunk?.iter().map(|&i| sel.msgs[i].blob.to_string()).collect();
            let store = self.cfg.store.clone();
            Some(tokio::spawn(async move { store.read_blobs(hashes).await }))
        };
        let Some(sel) = &self.selected else { return };
        let mut next = read_ahead(sel, chunks.first());
        for (n, chunk) in chunks.iter().enumerate() {
            let raws = match next.take() {
                Some(read) => read.await.unwrap_or_default(),
                None => Vec::new(),
            };
            let Some(sel) = &mut self.selected else { return };
            next = read_ahead(sel, chunks.get(n + 1));
            let read_only = sel.read_only;
            let mut out = Out::default();
            for (k, &idx) in chunk.iter().enumerate() {
                let m = &mut sel.msgs[idx];
                let mut flags_changed = false;
                if sets_seen && !read_only && !m.flags.iter().any(|f| f == "\\Seen") {
                    Arc::make_mut(&mut m.flags).push("\\Seen".into());
                    seen_updates.push((i64::from(m.uid), m.flags.join(" ")));
                    flags_changed = true;
                }
                let raw = raws.get(k).and_then(|r| r.as_deref());
                if needs_bytes && raw.is_none() {
                    tracing::error!(uid = m.uid, blob = %m.blob, "imap fetch: message bytes missing");
                }
                let entity = raw.map(|r| if needs_parts { Entity::parse(r) } else { Entity::top(r) });
                out.raw(&format!("* {} FETCH (", idx + 1));
                let mut first = true;
                let mut sep = |out: &mut Out| {
                    if !std::mem::replace(&mut first, false) {
                        out.raw(" ");
                    }
                };
                let mut wrote_flags = false;
                for item in &items {
                    match item {
                        MessageDataItemName::Uid => {
                            sep(&mut out);
                            out.raw(&format!("UID {}", m.uid));
                        }
                        MessageDataItemName::Flags => {
                            sep(&mut out);
                            out.raw(&format!("FLAGS ({})", m.flags.join(" ")));
                            wrote_flags = true;
                        }
                        MessageDataItemName::InternalDate => {
                            sep(&mut out);
                            out.raw(&format!("INTERNALDATE \"{}\"", internal_date(m.received_at)));
                        }
                        MessageDataItemName::Rfc822Size => {
                            sep(&mut out);
                            out.raw(&format!("RFC822.SIZE {}", m.size));
                        }
                        _ => {
                            let (Some(e), Some(raw)) = (&entity, raw) else { continue };
                            sep(&mut out);
                            fetch_content(&mut out, item, e, raw);
                        }
                    }
                }
                if flags_changed && !wrote_flags {
                    sep(&mut out);
                    out.raw(&format!("FLAGS ({})", m.flags.join(" ")));
                }
                out.raw(")\r\n");
            }
            self.conn.write(&out.into_bytes());
            // Large fetches go out as they are built, not all at the end.
            if self.conn.queued() > 256 * 1024 && self.conn.flush().await.is_err() {
                return;
            }
        }
        if !seen_updates.is_empty()
            && let Some(sel) = &self.selected
            && let Err(e) = self.cfg.store.set_flags(sel.folder.id, &seen_updates).await
        {
            tracing::error!(error = %e, "imap: storing \\Seen failed");
        }
        self.line(&format!("{tag} OK FETCH completed"));
    }

    pub(super) async fn store(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[String],
        uid: bool,
    ) {
        if self.selected.as_ref().is_some_and(|s| s.read_only) {
            self.line(&format!("{tag} NO [READ-ONLY] folder is read-only"));
            return;
        }
        let indices = self.resolve(set, uid);
        let Some(sel) = &mut self.selected else { return };
        let mut updates = Vec::new();
        let mut lines = Vec::new();
        for idx in indices {
            let m = &mut sel.msgs[idx];
            match kind {
                StoreType::Replace => m.flags = Arc::new(flags.to_vec()),
                StoreType::Add => {
                    for f in flags {
                        if !m.flags.iter().any(|x| x.eq_ignore_ascii_case(f)) {
                            Arc::make_mut(&mut m.flags).push(f.clone());
                        }
                    }
                }
                StoreType::Remove => {
                    Arc::make_mut(&mut m.flags).retain(|x| !flags.iter().any(|f| f.eq_ignore_ascii_case(x)))
                }
            }
            updates.push((i64::from(m.uid), m.flags.join(" ")));
            if response == StoreResponse::Answer {
                let uid_part = if uid { format!("UID {} ", m.uid) } else { String::new() };
                lines.push(format!("* {} FETCH ({uid_part}FLAGS ({}))", idx + 1, m.flags.join(" ")));
            }
        }
        let folder_id = sel.folder.id;
        if let Err(e) = self.cfg.store.set_flags(folder_id, &updates).await {
            tracing::error!(error = %e, "imap store failed");
            self.line(&format!("{tag} NO [SERVERBUG] flags not stored"));
            return;
        }
        for l in lines {
            self.line(&l);
        }
        self.line(&format!("{tag} OK STORE completed"));
    }

    pub(super) async fn search(&mut self, tag: &str, criteria: &[SearchKey<'_>], uid: bool) {
        let Some(sel) = &self.selected else { return };
        let needs = criteria.iter().any(search::needs_content);
        let max_seq = sel.msgs.len() as u32;
        let max_uid = sel.msgs.last().map_or(0, |m| m.uid);
        let mut hits = Vec::new();
        for (i, m) in sel.msgs.iter().enumerate() {
            let raw = if needs { self.cfg.store.read_blob(&m.blob).await.ok() } else { None };
            let c = Candidate {
                seq: i as u32 + 1,
                uid: m.uid,
                max_seq,
                max_uid,
                flags: &m.flags,
                size: m.size,
                received_at: m.received_at,
                raw: raw.as_deref(),
            };
            if criteria.iter().all(|k| search::matches(k, &c)) {
                hits.push(if uid { m.uid } else { c.seq });
            }
        }
        let mut l = String::from("* SEARCH");
        for h in hits {
            l.push_str(&format!(" {h}"));
        }
        self.line(&l);
        self.line(&format!("{tag} OK SEARCH completed"));
    }

    pub(super) async fn copy(&mut self, tag: &str, set: &SequenceSet, dest: &str, uid: bool, moving: bool) {
        let verb = if moving { "MOVE" } else { "COPY" };
        if moving && self.selected.as_ref().is_some_and(|s| s.read_only) {
            self.line(&format!("{tag} NO [READ-ONLY] folder is read-only"));
            return;
        }
        let Some(to) = self.folder(dest).await else {
            self.line(&format!("{tag} NO [TRYCREATE] no such folder"));
            return;
        };
        let indices = self.resolve(set, uid);
        let Some(sel) = &self.selected else { return };
        let from = sel.folder.id;
        let uids: Vec<i64> = indices.iter().map(|&i| i64::from(sel.msgs[i].uid)).collect();
        let learning = learns(&sel.folder.name, &to.name).map(|is_spam| {
            let blobs: Vec<String> = indices.iter().map(|&i| sel.msgs[i].blob.to_string()).collect();
            (blobs, is_spam)
        });
        if uids.is_empty() {
            self.line(&format!("{tag} OK {verb} completed (nothing matched)"));
            return;
        }
        let (uidvalidity, pairs) = match self.cfg.store.copy(from, &uids, to.id).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "imap {verb} failed");
                self.line(&format!("{tag} NO [SERVERBUG] {verb} failed"));
                return;
            }
        };
        let mut note = String::new();
        if to.name == RELEASE {
            note = self.release(to.id, &pairs).await;
        }
        if let Some((blobs, is_spam)) = learning {
            self.learn(blobs, is_spam).await;
        }
        let src: Vec<String> = pairs.iter().map(|(s, _)| s.to_string()).collect();
        let dst: Vec<String> = pairs.iter().map(|(_, d)| d.to_string()).collect();
        let copyuid = format!("COPYUID {uidvalidity} {} {}", src.join(","), dst.join(","));
        if moving {
            self.line(&format!("* OK [{copyuid}] moved"));
            if let Err(e) = self.cfg.store.expunge(from, &uids).await {
                tracing::error!(error = %e, "imap move: removing the originals failed");
            }
            self.sync().await;
            self.line(&format!("{tag} OK {verb} completed{note}"));
        } else {
            self.line(&format!("{tag} OK [{copyuid}] {verb} completed{note}"));
        }
    }

    /// Teaches the spam filter what the user just said of these messages
    /// (each stored blob is named by its content's hash).
    async fn learn(&self, blobs: Vec<String>, is_spam: bool) {
        let Some(learner) = &self.cfg.learner else { return };
        for hash in blobs {
            match self.cfg.store.read_blob(&hash).await {
                Ok(bytes) => learner.learn(self.account(), bytes, &hash, is_spam).await,
                Err(e) => {
                    tracing::warn!(account = %self.account(), error = %e, "a moved message could not be read to learn from")
                }
            }
        }
    }

    /// Re-injects messages that landed in the Release folder.
    async fn release(&self, folder_id: i64, pairs: &[(i64, i64)]) -> String {
        let Some(releaser) = &self.cfg.releaser else {
            return "; release is not available on this server".into();
        };
        let mut released = Vec::new();
        for &(_, uid) in pairs {
            match releaser.release(self.account(), folder_id, uid).await {
                Ok(what) => {
                    tracing::info!(account = %self.account(), uid, %what, "released over IMAP");
                    released.push((uid, "$Released".to_string()));
                }
                Err(e) => tracing::warn!(account = %self.account(), uid, error = %e, "release failed"),
            }
        }
        let mut flagged = Vec::new();
        if let Ok(rows) = self.cfg.store.messages(folder_id).await {
            for (uid, _) in &released {
                if let Some(r) = rows.iter().find(|r| r.uid == *uid) {
                    flagged.push((*uid, format!("{} $Released", r.flags).trim().to_string()));
                }
            }
        }
        let _ = self.cfg.store.set_flags(folder_id, &flagged).await;
        format!("; {} of {} released to their recipients", released.len(), pairs.len())
    }

    pub(super) async fn expunge(&mut self, tag: &str, only: Option<&SequenceSet>) {
        let Some(sel) = &self.selected else { return };
        if sel.read_only {
            self.line(&format!("{tag} NO [READ-ONLY] folder is read-only"));
            return;
        }
        let uids = deleted_uids(sel, only);
        if let Err(e) = self.cfg.store.expunge(sel.folder.id, &uids).await {
            tracing::error!(error = %e, "imap expunge failed");
            self.line(&format!("{tag} NO [SERVERBUG] expunge failed"));
            return;
        }
        self.sync().await;
        self.line(&format!("{tag} OK EXPUNGE completed"));
    }
}

pub(super) fn deleted_uids(sel: &Selected, only: Option<&SequenceSet>) -> Vec<i64> {
    let max_uid = sel.msgs.last().map_or(0, |m| m.uid);
    sel.msgs
        .iter()
        .filter(|m| m.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted")))
        .filter(|m| only.is_none_or(|s| in_set(s, m.uid, max_uid)))
        .map(|m| i64::from(m.uid))
        .collect()
}

/// What a move or copy from folder `from` to folder `to` tells the spam
/// filter: into `Spam` it is spam; out of `Spam` into a folder of the
/// user's (not Trash, not Release: those say nothing of the content) it is
/// not.
fn learns(from: &str, to: &str) -> Option<bool> {
    const SPAM: &str = "Spam";
    match (from == SPAM, to == SPAM) {
        (false, true) => Some(true),
        (true, false) if !matches!(to, "Trash" | RELEASE) => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::learns;

    #[test]
    fn only_moves_into_or_out_of_spam_teach() {
        assert_eq!(learns("Human", "Spam"), Some(true));
        assert_eq!(learns("Archive", "Spam"), Some(true));
        assert_eq!(learns("Spam", "INBOX"), Some(false));
        assert_eq!(learns("Spam", "Archive"), Some(false));
        assert_eq!(learns("Spam", "Trash"), None, "deleting says nothing of the content");
        assert_eq!(learns("Spam", "Release"), None);
        assert_eq!(learns("Spam", "Spam"), None);
        assert_eq!(learns("Human", "Archive"), None);
    }
}
