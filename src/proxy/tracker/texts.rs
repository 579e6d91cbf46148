//! The statement texts a session's requests carry: fingerprinted once, reused when a text
//! comes back verbatim, and marked when a rule rewrites the statement on its way.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::{RECENT_TEXT_MAX_BYTES, RECENT_TEXTS, Tracker};
use crate::event::{BindSample, ShadowTarget, StatementText};

impl Tracker {
    pub(super) fn text(&self, sql: Bytes) -> Arc<StatementText> {
        self.typed_text(sql, Bytes::new())
    }

    fn typed_text(&self, sql: Bytes, param_types: Bytes) -> Arc<StatementText> {
        let fingerprint = self
            .fingerprints
            .as_ref()
            .map(|cache| cache.fingerprint(&sql));
        Arc::new(StatementText {
            sql,
            fingerprint,
            rewritten_by: None,
            shadow: None,
            bind: BindSample::with_types(param_types),
        })
    }

    /// The text of a statement this session sends again verbatim (an unnamed Parse or a
    /// Query repeated with `$n` parameters, as most drivers do): the last few texts are kept,
    /// so a repeat costs a comparison of its bytes instead of a copy, an allocation and a
    /// fingerprint lookup.
    ///
    /// `param_types` is the Parse's parameter-type section (empty for a Query): kept with the
    /// text, in the same allocation, for a plan sample of its Binds.
    pub(super) fn recent_text(&mut self, sql: &[u8], param_types: &[u8]) -> Arc<StatementText> {
        if let Some(i) = self
            .recent
            .iter()
            .position(|t| t.sql[..] == *sql && t.bind.param_types[..] == *param_types)
        {
            return self.recent[i].clone();
        }
        let text = if param_types.is_empty() {
            self.text(Bytes::copy_from_slice(sql))
        } else {
            let mut both = BytesMut::with_capacity(sql.len() + param_types.len());
            both.extend_from_slice(sql);
            both.extend_from_slice(param_types);
            let both = both.freeze();
            self.typed_text(both.slice(..sql.len()), both.slice(sql.len()..))
        };
        if sql.len() <= RECENT_TEXT_MAX_BYTES {
            if self.recent.len() == RECENT_TEXTS {
                self.recent.pop_back();
            }
            self.recent.push_front(text.clone());
        }
        text
    }

    /// The statement's text for the server: the rewrite a rule asks for, if any. The text the
    /// tracker reports keeps the original SQL (and so its fingerprint), marked as rewritten.
    ///
    /// `param_types` is the Parse's parameter-type section (empty for a simple-protocol
    /// statement): a statement under shadow verification keeps it for its sampled Binds.
    pub(super) fn rewritten(
        &mut self,
        text: Arc<StatementText>,
        param_types: &[u8],
        now: Instant,
    ) -> (Arc<StatementText>, Option<Bytes>) {
        let in_transaction = self.tx_status != b'I';
        let Some(rewrite) = self
            .gate
            .as_mut()
            .and_then(|g| g.rewrite(&text, &self.session, in_transaction, now))
        else {
            return (text, None);
        };
        let (rewritten_by, shadow, sent) = if rewrite.shadow {
            let target = ShadowTarget {
                rule: rewrite.rule,
                sql: rewrite.sql,
                param_types: Bytes::copy_from_slice(param_types),
            };
            (None, Some(Arc::new(target)), None)
        } else {
            (Some(rewrite.rule), None, Some(rewrite.sql))
        };
        let marked = Arc::new(StatementText {
            sql: text.sql.clone(),
            fingerprint: text.fingerprint,
            rewritten_by,
            shadow,
            bind: BindSample::with_types(text.bind.param_types.clone()),
        });
        (marked, sent)
    }

    pub(super) fn unknown(&self, what: &str, name: &[u8]) -> Arc<StatementText> {
        let label = format!(
            "/* pgshape: unknown {what} {} */",
            String::from_utf8_lossy(name)
        );
        self.text(Bytes::from(label))
    }
}
