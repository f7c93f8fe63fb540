//! The seller's card keys: listing them (secrets opened: the seller's own stock), import
//! batches, removing unsold ones, and exporting them as CSV a page at a time. Keys stay
//! sealed at rest; changes are audited by the store, an export here (it changes nothing,
//! and its row never holds a secret).

use bytes::Bytes;
use futures::Stream;
use kami_core::CardStatus;
use kami_store::{Actor, CardBatch, CardFilter, CardRecord, CardSelection};
use serde_json::json;

use super::{ServiceError, ServiceResult};
use crate::state::AppState;
use crate::time::rfc3339;

/// Keys read per page of an export: memory holds one page, whatever the stock.
pub const EXPORT_PAGE: u32 = 500;

pub fn parse_status(s: &str) -> ServiceResult<CardStatus> {
    CardStatus::parse(s).ok_or_else(|| {
        ServiceError::invalid(
            "invalid_status",
            format!("status must be available, reserved or sold, not {s:?}"),
        )
    })
}

pub async fn list(
    state: &AppState,
    slug: &str,
    filter: CardFilter,
) -> ServiceResult<Vec<CardRecord>> {
    Ok(state.store.cards(slug, filter).await?)
}

pub async fn batches(state: &AppState, slug: &str, limit: u32) -> ServiceResult<Vec<CardBatch>> {
    Ok(state.store.card_batches(slug, limit).await?)
}

#[tracing::instrument(level = "debug", skip_all, fields(product = %slug, card = id))]
pub async fn delete_one(state: &AppState, slug: &str, id: i64, actor: &Actor) -> ServiceResult<()> {
    state
        .store
        .delete_card(slug, id, actor, state.now_ms())
        .await?;
    state.catalog.invalidate();
    Ok(())
}

#[tracing::instrument(level = "debug", skip_all, fields(product = %slug))]
pub async fn delete_many(
    state: &AppState,
    slug: &str,
    which: CardSelection,
    actor: &Actor,
) -> ServiceResult<u64> {
    let n = state
        .store
        .delete_cards(slug, which, actor, state.now_ms())
        .await?;
    state.catalog.invalidate();
    Ok(n)
}

/// A CSV field: formula-looking values (`=`, `+`, `-`, `@`, tab, CR first) get a leading `'`
/// so a spreadsheet shows them as text instead of running them; then RFC 4180 quoting.
pub fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

fn csv_line(c: &CardRecord) -> String {
    format!(
        "{},{},{},{}\r\n",
        c.id,
        csv_field(&c.secret),
        c.batch.map(|b| b.to_string()).unwrap_or_default(),
        rfc3339(c.created_at)
    )
}

/// The unsold keys (`available` or `reserved`) of a product as CSV (`id,secret,batch,
/// created_at`), read a page at a time while the body is sent. The export is audited before
/// the first byte (what and how many, never a secret); an unknown product is an error then.
pub async fn export_csv(
    state: &AppState,
    slug: &str,
    status: CardStatus,
    actor: &Actor,
) -> ServiceResult<impl Stream<Item = Result<Bytes, kami_store::StoreError>> + Send + 'static> {
    if status == CardStatus::Sold {
        return Err(ServiceError::invalid(
            "invalid_status",
            "only unsold keys are exported: status must be available or reserved",
        ));
    }
    let product = state.store.admin_product(slug).await?;
    let count = match status {
        CardStatus::Reserved => product.cards.reserved,
        _ => product.cards.available + product.cards.loop_keys,
    };
    state
        .store
        .record_audit(
            actor.entry(
                "cards.export",
                format!("product:{slug}"),
                None,
                Some(json!({"status": status, "keys": count})),
            ),
            state.now_ms(),
        )
        .await?;
    let store = state.store.clone();
    let slug = slug.to_owned();
    // State: the last id sent (`None` once the last page was sent), and whether the header
    // line went out.
    let start = (Some(0i64), false);
    Ok(futures::stream::try_unfold(
        start,
        move |(after, header_sent)| {
            let (store, slug) = (store.clone(), slug.clone());
            async move {
                if !header_sent {
                    let header = Bytes::from_static(b"id,secret,batch,created_at\r\n");
                    return Ok(Some((header, (after, true))));
                }
                let Some(after) = after else {
                    return Ok(None);
                };
                let page = store
                    .card_export_page(&slug, status, after, EXPORT_PAGE)
                    .await?;
                let next = (page.len() == EXPORT_PAGE as usize)
                    .then(|| page.last().map(|c| c.id))
                    .flatten();
                if page.is_empty() {
                    return Ok(None);
                }
                let text: String = page.iter().map(csv_line).collect();
                Ok(Some((Bytes::from(text), (next, true))))
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("ABC-123"), "ABC-123");
        assert_eq!(csv_field("=1+2"), "'=1+2");
        assert_eq!(csv_field("+86"), "'+86");
        assert_eq!(csv_field("-x"), "'-x");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(
            csv_field("=HYPERLINK(\"x\",\"y\")"),
            "\"'=HYPERLINK(\"\"x\"\",\"\"y\"\")\""
        );
    }
}
