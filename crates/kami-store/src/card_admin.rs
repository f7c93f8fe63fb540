//! The seller's card-key stock: import batches, listing keys with their secrets opened,
//! removing unsold keys, exporting them a page at a time. Each change writes its audit row
//! in its transaction; a key held by an order (reserved, sold, or a loop key an order
//! delivered) is never removed.

use kami_core::{CardStatus, Millis};
use serde_json::json;

use crate::audit;
use crate::catalog;
use crate::db::{Row, Tx};
use crate::error::{Result, StoreError};
use crate::model::{
    Actor, AuditEntry, CardBatch, CardFilter, CardRecord, CardSelection, Delivery, OpenBatch,
};
use crate::params;
use crate::sealed::{card_place, Keyring};

/// The most keys one page of a listing or an export holds.
pub const MAX_PAGE: u32 = 1000;

/// A key no order holds: available, and not a loop key some order delivered. On the
/// deleted table itself (not a subquery), so PostgreSQL re-checks it on the row version a
/// concurrent reservation leaves: a key is either reserved or deleted, never both.
macro_rules! unsold {
    () => {
        "cards.status = 'available' \
         AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.loop_card_id = cards.id)"
    };
}

fn entry(actor: &Actor, action: &str, target: String) -> AuditEntry {
    actor.entry(action, target, None, None)
}

/// Open an import batch for an auto-delivery product.
pub(crate) fn begin_batch(
    tx: &mut dyn Tx,
    slug: &str,
    is_loop: bool,
    actor: &Actor,
    now: Millis,
) -> Result<OpenBatch> {
    let (product_id, delivery) = catalog::product_id(tx, slug)?;
    if delivery != Delivery::Auto {
        return Err(StoreError::InvalidInput(
            "card keys can only be imported for auto-delivery products".into(),
        ));
    }
    let id = tx
        .query_one(
            "INSERT INTO card_batches (product_id, is_loop, actor, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING id",
            params![product_id, is_loop, actor.actor.as_str(), now],
        )?
        .get("id")?;
    Ok(OpenBatch {
        id,
        product_id,
        slug: slug.to_owned(),
        is_loop,
        actor: actor.clone(),
    })
}

fn batch_from_row(r: &Row) -> Result<CardBatch> {
    let count = |col: &str| -> Result<u64> { Ok(u64::try_from(r.get::<i64>(col)?).unwrap_or(0)) };
    Ok(CardBatch {
        id: r.get("id")?,
        is_loop: r.get("is_loop")?,
        imported: count("imported")?,
        duplicates: count("duplicates")?,
        actor: r.get("actor")?,
        created_at: r.get("created_at")?,
    })
}

/// The import is over (complete or not): its audit row, with what it brought.
pub(crate) fn finish_batch(
    tx: &mut dyn Tx,
    batch: &OpenBatch,
    rejected: u64,
    now: Millis,
) -> Result<CardBatch> {
    let b = batch_from_row(&tx.query_one(
        "SELECT id, is_loop, imported, duplicates, actor, created_at FROM card_batches WHERE id = $1",
        params![batch.id],
    )?)?;
    let mut e = entry(
        &batch.actor,
        "cards.import",
        format!("product:{}", batch.slug),
    );
    e.after = Some(json!({
        "batch": b.id,
        "imported": b.imported,
        "duplicates": b.duplicates,
        "rejected": rejected,
        "loop": b.is_loop,
    }));
    audit::record(tx, &e, now)?;
    Ok(b)
}

/// A product's import batches, newest first (at most `limit`).
pub(crate) fn batches(tx: &mut dyn Tx, slug: &str, limit: u32) -> Result<Vec<CardBatch>> {
    let (product_id, _) = catalog::product_id(tx, slug)?;
    tx.query(
        "SELECT id, is_loop, imported, duplicates, actor, created_at FROM card_batches \
         WHERE product_id = $1 ORDER BY id DESC LIMIT $2",
        params![product_id, i64::from(limit.clamp(1, MAX_PAGE))],
    )?
    .iter()
    .map(batch_from_row)
    .collect()
}

fn card_from_row(ring: &Keyring, r: &Row) -> Result<CardRecord> {
    let sealed: Vec<u8> = r.get("secret")?;
    Ok(CardRecord {
        id: r.get("id")?,
        secret: ring.open_string(&card_place(r.get("product_id")?), &sealed)?,
        status: r.get("status")?,
        batch: r.get("batch_id")?,
        is_loop: r.get("is_loop")?,
        created_at: r.get("created_at")?,
        sold_at: r.get("sold_at")?,
        order_no: r.get("order_no")?,
    })
}

/// A product's keys, newest first, secrets opened.
pub(crate) fn list(
    tx: &mut dyn Tx,
    ring: &Keyring,
    slug: &str,
    f: &CardFilter,
) -> Result<Vec<CardRecord>> {
    let (product_id, _) = catalog::product_id(tx, slug)?;
    tx.query(
        "SELECT c.id, c.product_id, c.secret, c.status, c.batch_id, c.is_loop, c.created_at, \
           c.sold_at, o.order_no \
         FROM cards c LEFT JOIN orders o ON o.id = c.order_id \
         WHERE c.product_id = $1 AND ($2 = '' OR c.status = $2) AND ($3 = 0 OR c.batch_id = $3) \
           AND c.id < $4 \
         ORDER BY c.id DESC LIMIT $5",
        params![
            product_id,
            f.status.map_or("", CardStatus::as_str),
            f.batch.unwrap_or(0),
            f.before.unwrap_or(i64::MAX),
            i64::from(f.limit.clamp(1, MAX_PAGE))
        ],
    )?
    .iter()
    .map(|r| card_from_row(ring, r))
    .collect()
}

/// One page of a product's keys in `status` after key id `after`, oldest first (exports).
pub(crate) fn export_page(
    tx: &mut dyn Tx,
    ring: &Keyring,
    product_id: i64,
    status: CardStatus,
    after: i64,
    limit: u32,
) -> Result<Vec<CardRecord>> {
    tx.query(
        "SELECT c.id, c.product_id, c.secret, c.status, c.batch_id, c.is_loop, c.created_at, \
           c.sold_at, o.order_no \
         FROM cards c LEFT JOIN orders o ON o.id = c.order_id \
         WHERE c.product_id = $1 AND c.status = $2 AND c.id > $3 ORDER BY c.id LIMIT $4",
        params![
            product_id,
            status,
            after,
            i64::from(limit.clamp(1, MAX_PAGE))
        ],
    )?
    .iter()
    .map(|r| card_from_row(ring, r))
    .collect()
}

/// Remove one unsold key. [`StoreError::CardNotFound`] when the product has no such key,
/// [`StoreError::CardSold`] when an order holds it; either way nothing changed.
pub(crate) fn delete_one(
    tx: &mut dyn Tx,
    slug: &str,
    card_id: i64,
    actor: &Actor,
    now: Millis,
) -> Result<()> {
    let (product_id, _) = catalog::product_id(tx, slug)?;
    let Some(r) = tx.query_opt(
        "SELECT c.status, c.batch_id, c.is_loop FROM cards c WHERE c.id = $1 AND c.product_id = $2 FOR UPDATE",
        params![card_id, product_id],
    )?
    else {
        return Err(StoreError::CardNotFound);
    };
    // Compare-and-set on "no order holds it".
    let deleted = tx.exec(
        concat!("DELETE FROM cards WHERE id = $1 AND ", unsold!()),
        params![card_id],
    )?;
    if deleted == 0 {
        return Err(StoreError::CardSold);
    }
    let mut e = entry(actor, "card.delete", format!("card:{card_id}"));
    e.before = Some(json!({
        "product": slug,
        "status": r.get::<CardStatus>("status")?,
        "batch": r.get::<Option<i64>>("batch_id")?,
        "loop": r.get::<bool>("is_loop")?,
    }));
    audit::record(tx, &e, now)
}

/// Remove the unsold keys of a batch, or all of a product's unsold keys; how many went.
pub(crate) fn delete_many(
    tx: &mut dyn Tx,
    slug: &str,
    which: CardSelection,
    actor: &Actor,
    now: Millis,
) -> Result<u64> {
    let (product_id, _) = catalog::product_id(tx, slug)?;
    let batch = match which {
        CardSelection::Batch(id) => {
            tx.query_opt(
                "SELECT id FROM card_batches WHERE id = $1 AND product_id = $2",
                params![id, product_id],
            )?
            .ok_or(StoreError::BatchNotFound)?;
            id
        }
        CardSelection::AllUnsold => 0,
    };
    let deleted = tx.exec(
        concat!(
            "DELETE FROM cards WHERE product_id = $1 AND ($2 = 0 OR batch_id = $2) AND ",
            unsold!()
        ),
        params![product_id, batch],
    )?;
    let mut e = entry(actor, "cards.delete", format!("product:{slug}"));
    e.after = Some(json!({
        "batch": (batch != 0).then_some(batch),
        "all_unsold": batch == 0,
        "deleted": deleted,
    }));
    audit::record(tx, &e, now)?;
    Ok(deleted)
}
