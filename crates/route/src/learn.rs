//! Each user's own spam-filter counts: what a user taught the filter by
//! moving mail into or out of `Spam` over IMAP ([`imap::Learner`]), kept in
//! the record (`record::spam_tokens`) and in memory once read. Filter mode
//! scores a recipient who taught it anything with the global model plus
//! that user's counts (weighted, `spam::Params::user_weight`), so one
//! user's corrections change that user's verdicts and no one else's.
//!
//! Training is on errors (SpamBayes, DSPAM): a move is learnt only when
//! the filter, with that user's counts, did not already say the same; a
//! message moved back is untrained first, so it never counts twice.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use record::spam_tokens::{ScopeCounts, SpamTokens};

use crate::filter::Scanner;

/// Users remembered at once; past it the memory starts again (each user is
/// read back from the record on their next message).
const USERS_MAX: usize = 100_000;

/// Users' counts (cheap to clone).
#[derive(Clone)]
pub struct UserModels {
    store: Arc<dyn SpamTokens>,
    scanner: Scanner,
    /// `None`: the user never taught the filter anything.
    cache: Arc<RwLock<HashMap<String, Option<Arc<spam::Counts>>>>>,
}

impl UserModels {
    pub fn new(store: Arc<dyn SpamTokens>, scanner: Scanner) -> Self {
        UserModels { store, scanner, cache: Arc::default() }
    }

    /// A user's own counts, if the user taught the filter anything; a
    /// record that cannot be read leaves the global model alone in charge.
    pub async fn counts(&self, user: &str) -> Option<Arc<spam::Counts>> {
        let user = user.to_ascii_lowercase();
        if let Some(known) = self.cache.read().unwrap_or_else(|e| e.into_inner()).get(&user) {
            return known.clone();
        }
        match self.store.load_counts(&user).await {
            Ok(c) => self.remember(user, c),
            Err(e) => {
                tracing::warn!(user = %user, error = %e, "a user's spam counts could not be read: scored with the global model");
                None
            }
        }
    }

    fn remember(&self, user: String, c: ScopeCounts) -> Option<Arc<spam::Counts>> {
        let counts = (c.ham + c.spam > 0).then(|| Arc::new(counts_of(c)));
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= USERS_MAX {
            cache.clear();
        }
        cache.insert(user, counts.clone());
        counts
    }

    /// Learns that `raw` is (or is not) spam to `user`, if the filter did
    /// not already say so for this user; logged at INFO either way.
    pub async fn learn(&self, user: &str, raw: &[u8], hash: &str, is_spam: bool) {
        let user = user.to_ascii_lowercase();
        let filter = self.scanner.current();
        let mine = self.counts(&user).await;
        let auth = spam::AuthResults::default();
        let verdict = match &mine {
            Some(c) => filter.score_for_user(raw, &auth, c),
            None => filter.score(raw, &auth),
        };
        let said = verdict.class;
        let right = matches!((said, is_spam), (spam::Class::Spam, true) | (spam::Class::Ham, false));
        let before = self.store.trained_as(&user, hash).await.ok().flatten();
        if right && before.is_none() {
            tracing::info!(user = %user, is_spam, score = verdict.score, "the filter already said so: not trained");
            return;
        }
        let tokens = spam::tokens::tokenize_bytes(raw);
        match self.store.train(&user, hash, &tokens, is_spam).await {
            Ok(changed) => {
                self.cache.write().unwrap_or_else(|e| e.into_inner()).remove(&user);
                tracing::info!(user = %user, is_spam, changed, tokens = tokens.len(), "trained from an IMAP move");
            }
            Err(e) => tracing::warn!(user = %user, error = %e, "training from an IMAP move failed"),
        }
    }
}

impl imap::Learner for UserModels {
    fn learn<'a>(
        &'a self,
        account: &'a str,
        message: Vec<u8>,
        hash: &'a str,
        is_spam: bool,
    ) -> imap::BoxFuture<'a, ()> {
        Box::pin(async move { UserModels::learn(self, account, &message, hash, is_spam).await })
    }
}

/// What IMAP moves into and out of `Spam` teach: users' own counts and,
/// when `[spam] rspamd_url` is set, rspamd (`/learnspam`, `/learnham`).
pub fn learner(
    users: Option<UserModels>,
    rspamd: Option<crate::rspamd::Rspamd>,
) -> Option<Arc<dyn imap::Learner>> {
    let users = users.map(|u| Arc::new(u) as Arc<dyn imap::Learner>);
    match rspamd {
        Some(rspamd) => Some(Arc::new(crate::rspamd::Teacher { rspamd, then: users })),
        None => users,
    }
}

/// The record's counts as the filter holds them.
pub fn counts_of(c: ScopeCounts) -> spam::Counts {
    let mut tokens = spam::bayes::TokenMap::default();
    tokens.extend(c.tokens.into_iter().map(|(t, h, s)| (t, (h, s))));
    spam::Counts { tokens, ham: c.ham, spam: c.spam }
}

/// The filter's counts as the record keeps them.
pub fn record_of(c: &spam::Counts) -> ScopeCounts {
    let tokens = c.tokens.iter().map(|(t, (h, s))| (*t, *h, *s)).collect();
    ScopeCounts { ham: c.ham, spam: c.spam, tokens }
}
