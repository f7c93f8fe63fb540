//! kami's persistence: one [`Store`] API over SQLite and PostgreSQL.
//!
//! The business logic (catalog, orders, payments) is written once against the small [`db::Tx`]
//! trait, reading rows by column name ([`db::Row::get`]); every order and payment status
//! change goes through one module (`transitions`). Each backend supplies transactions with
//! the right concurrency discipline:
//! SQLite a single writer thread with group commit, PostgreSQL row locks, `SKIP LOCKED`
//! claims and retried transactions. Correctness lives in the database: unique keys,
//! compare-and-set status updates, and an outbox written in the same transaction.

mod admin_roster;
mod admin_users;
mod alert_conditions;
mod alert_inputs;
pub mod alert_signal;
mod alert_targets;
mod attempts;
mod attention;
mod audit;
mod card_admin;
mod cards;
mod catalog;
mod catalog_admin;
mod channel_measures;
mod charges;
mod checks;
mod coupons;
pub mod db;
mod error;
mod explain;
mod fulfilment;
mod keyfiles;
mod keylock;
mod keys;
mod migrate;
pub mod model;
#[macro_use]
mod orders;
mod categories;
mod channel_health;
mod orders_search;
mod outbox;
mod payments;
mod postgres;
mod reconciliation;
mod refunds;
mod row;
pub mod sealed;
mod sessions;
mod settings;
mod sqlite;
mod stats;
mod stored_channels;
mod transitions;

use std::sync::Arc;

use kami_core::{CardStatus, CouponCode, Millis, OrderNo};

pub use admin_roster::{AdminUserSummary, UserChange};
pub use admin_users::{AdminUser, FactorCheck, LockPolicy};
pub use alert_conditions::{
    AlertCondition, AlertDelivery, Applied, DeliveryRecord, TargetEvents, ALERT_DELIVERY,
};
pub use alert_inputs::{CreatedPaid, PaidSince};
pub use alert_signal::{AlertEvent, AlertSignal, ALERT_SIGNAL};
pub use alert_targets::{AlertTargetSpec, StoredAlertTarget, TargetSecret};
pub use attempts::NewAttempt;
pub use attention::{ActionOrder, StockLevel};
pub use categories::{Category, CategoryOutcome, CategoryPatch, Direction};
pub use channel_health::HealthRow;
pub use channel_measures::{
    ChannelMeasureRows, MeasureCallRow, MeasureFailureRow, MeasureFoundRow, MeasureOrderRow,
};
pub use checks::{OrderPayment, PaymentCheck};
pub use coupons::{Coupon, CouponKind, CouponPatch, CouponRemoval, CouponSettings};
pub use error::{Result, StoreError};
/// Order-path statements whose PostgreSQL plans the engine tests check, as sent.
pub mod planned {
    pub use crate::orders::EXPIRY_SWEEP;
    pub use crate::payments::PAYMENT_LOOKUP;
}
pub use keyfiles::{create_private_dir, restrict_file, KeyFiles};
pub use keylock::KeyLock;
pub use keys::{RotateStep, Rotation};
pub use model::*;
pub use orders_search::MAX_PAGE as MAX_ORDER_PAGE;
pub use outbox::{MailState, OutboxItem, ORDER_DELIVERED, ORDER_FULFILLED};
pub use reconciliation::{
    BatchFilter, BatchTotals, CarryIn, Finish, ItemKind, NewItem, ReconPayment, ReconRefund,
    ReconciliationBatch, ReconciliationItem,
};
pub use refunds::{NewRefund, Refund, RefundCall, RefundResult};
pub use sessions::{NewSession, SecondFactor, Session};
pub use settings::{
    SavedSetting, SavedSettings, SettingValue, SettingsChanges, SettingsCheck, SECRET_MARK,
};
pub use stats::{
    CallOutcome, CallRow, ChannelCall, CreatedRow, PaidRow, RefundedRow, StatsRows, BUCKET_MS,
    DAY_MS,
};
pub use stored_channels::{
    ChannelRemoval, ChannelSecrets, ChannelSpec, ChannelsFingerprint, StoredChannel,
};

use crate::db::Tx;

/// Keys imported per write transaction: bounds how long one import holds the writer.
const IMPORT_CHUNK: usize = 1000;

enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

/// Cheap to clone; all clones share the connections.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
    /// The master keys secrets are sealed under (`keys.rs`, `sealed.rs`).
    keys: Arc<keys::KeyState>,
}

impl Store {
    /// Open (but do not migrate or unlock) the database at `url`: `sqlite://path` or
    /// `postgres://...`.
    pub fn open(url: &str, max_connections: u32) -> Result<Store> {
        let backend = if let Some(path) = sqlite::path_from_url(url) {
            Backend::Sqlite(sqlite::Sqlite::open(path, max_connections.min(8))?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres(postgres::Postgres::open(url, max_connections)?)
        } else {
            return Err(StoreError::BadUrl);
        };
        Ok(Store {
            backend: Arc::new(backend),
            keys: Arc::default(),
        })
    }

    /// Open, bring the schema up to date and unlock with the master key of `keys`
    /// ([`Store::unlock`]: created if missing on a database without secrets, refused if wrong).
    pub async fn connect(url: &str, max_connections: u32, keys: &KeyFiles) -> Result<Store> {
        let store = Store::open(url, max_connections)?;
        store.migrate().await?;
        store.unlock(keys).await?;
        Ok(store)
    }

    /// As [`Store::connect`] with a key ring in hand instead of key files (tests, tools).
    pub async fn connect_with_keyring(
        url: &str,
        max_connections: u32,
        ring: sealed::Keyring,
    ) -> Result<Store> {
        let store = Store::open(url, max_connections)?;
        store.migrate().await?;
        store
            .unlock_with(ring, std::path::Path::new("(key ring given in code)"))
            .await?;
        Ok(store)
    }

    pub fn backend_name(&self) -> &'static str {
        match &*self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Create or upgrade the schema. Safe to run concurrently from several processes.
    pub async fn migrate(&self) -> Result<()> {
        match &*self.backend {
            Backend::Sqlite(db) => db.with_writer_raw(migrate::sqlite).await,
            Backend::Postgres(db) => db.with_client(migrate::postgres).await,
        }
    }

    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut dyn Tx) -> Result<T> + Send + 'static,
    {
        match &*self.backend {
            Backend::Sqlite(db) => db.write(f).await,
            Backend::Postgres(db) => db.run(false, f).await,
        }
    }

    /// [`Store::write`] whose change gets `audit` in the same commit.
    async fn write_audited<T, F>(&self, audit: AuditEntry, now: Millis, mut f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut dyn Tx) -> Result<T> + Send + 'static,
    {
        self.write(move |tx| {
            let done = f(tx)?;
            audit::record(tx, &audit, now)?;
            Ok(done)
        })
        .await
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut dyn Tx) -> Result<T> + Send + 'static,
    {
        match &*self.backend {
            Backend::Sqlite(db) => db.read(f).await,
            Backend::Postgres(db) => db.run(true, f).await,
        }
    }

    // ---- catalogue ----

    pub async fn create_product(&self, p: NewProduct, now: Millis) -> Result<()> {
        self.write(move |tx| catalog::create_product(tx, &p, now))
            .await
    }

    pub async fn list_products(&self) -> Result<Vec<Product>> {
        self.read(catalog::list_products).await
    }

    pub async fn product(&self, slug: &str) -> Result<Option<Product>> {
        let slug = slug.to_owned();
        self.read(move |tx| catalog::product_by_slug(tx, &slug))
            .await
    }

    /// Import keys (already parsed, distinct) as one batch of `actor`'s, in chunks; `progress`
    /// gets the running count. ([`Store::begin_card_batch`] and the functions after it do
    /// the same for keys that arrive a chunk at a time.)
    pub async fn import_cards(
        &self,
        slug: &str,
        keys: Vec<String>,
        is_loop: bool,
        now: Millis,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<ImportResult> {
        let batch = self
            .begin_card_batch(slug, is_loop, &Actor::new("cli", None), now)
            .await?;
        let mut total = ImportResult::default();
        for chunk in keys.chunks(IMPORT_CHUNK) {
            let r = self.import_into_batch(&batch, chunk.to_vec(), now).await?;
            total.imported += r.imported;
            total.duplicates += r.duplicates;
            progress(total.imported + total.duplicates);
        }
        self.finish_card_batch(&batch, 0, now).await?;
        Ok(total)
    }

    /// Open an import batch for the auto-delivery product `slug` (no such product, or a
    /// manual one: refused before any key is read).
    pub async fn begin_card_batch(
        &self,
        slug: &str,
        is_loop: bool,
        actor: &Actor,
        now: Millis,
    ) -> Result<OpenBatch> {
        let (slug, actor) = (slug.to_owned(), actor.clone());
        self.write(move |tx| card_admin::begin_batch(tx, &slug, is_loop, &actor, now))
            .await
    }

    /// Import keys (already parsed, distinct) into an open batch, in chunks of
    /// [`IMPORT_CHUNK`] per transaction.
    pub async fn import_into_batch(
        &self,
        batch: &OpenBatch,
        keys: Vec<String>,
        now: Millis,
    ) -> Result<ImportResult> {
        let ring = self.ring()?;
        let mut total = ImportResult::default();
        for chunk in keys.chunks(IMPORT_CHUNK) {
            let (chunk, ring, batch) = (chunk.to_vec(), ring.clone(), batch.clone());
            let r = self
                .write(move |tx| catalog::import_cards(tx, &ring, &batch, &chunk, now))
                .await?;
            total.imported += r.imported;
            total.duplicates += r.duplicates;
        }
        Ok(total)
    }

    /// Close an import (finished or stopped part-way): its audit row, and the batch as
    /// recorded. `rejected`: lines the parser refused, for the audit row.
    pub async fn finish_card_batch(
        &self,
        batch: &OpenBatch,
        rejected: u64,
        now: Millis,
    ) -> Result<CardBatch> {
        let batch = batch.clone();
        self.write(move |tx| card_admin::finish_batch(tx, &batch, rejected, now))
            .await
    }

    /// A product's import batches, newest first.
    pub async fn card_batches(&self, slug: &str, limit: u32) -> Result<Vec<CardBatch>> {
        let slug = slug.to_owned();
        self.read(move |tx| card_admin::batches(tx, &slug, limit))
            .await
    }

    /// A product's keys, newest first, secrets opened (the seller's view).
    pub async fn cards(&self, slug: &str, filter: CardFilter) -> Result<Vec<CardRecord>> {
        let (slug, ring) = (slug.to_owned(), self.ring()?);
        self.read(move |tx| card_admin::list(tx, &ring, &slug, &filter))
            .await
    }

    /// Up to `limit` keys of product `slug` in `status` with ids above `after`, oldest first,
    /// secrets opened: an export reads a page at a time.
    pub async fn card_export_page(
        &self,
        slug: &str,
        status: CardStatus,
        after: i64,
        limit: u32,
    ) -> Result<Vec<CardRecord>> {
        let (slug, ring) = (slug.to_owned(), self.ring()?);
        self.read(move |tx| {
            let (product_id, _) = catalog::product_id(tx, &slug)?;
            card_admin::export_page(tx, &ring, product_id, status, after, limit)
        })
        .await
    }

    /// Remove one unsold key ([`StoreError::CardSold`] if an order holds it).
    pub async fn delete_card(
        &self,
        slug: &str,
        card_id: i64,
        actor: &Actor,
        now: Millis,
    ) -> Result<()> {
        let (slug, actor) = (slug.to_owned(), actor.clone());
        self.write(move |tx| card_admin::delete_one(tx, &slug, card_id, &actor, now))
            .await
    }

    /// Remove a batch's unsold keys, or all of the product's; how many went. Keys orders hold
    /// are never touched.
    pub async fn delete_cards(
        &self,
        slug: &str,
        which: CardSelection,
        actor: &Actor,
        now: Millis,
    ) -> Result<u64> {
        let (slug, actor) = (slug.to_owned(), actor.clone());
        self.write(move |tx| card_admin::delete_many(tx, &slug, which, &actor, now))
            .await
    }

    /// Every product, hidden ones too, with stock by status (the seller's view).
    pub async fn admin_products(&self) -> Result<Vec<AdminProduct>> {
        self.read(catalog::admin_products).await
    }

    pub async fn admin_product(&self, slug: &str) -> Result<AdminProduct> {
        let slug = slug.to_owned();
        self.read(move |tx| catalog::admin_product(tx, &slug)).await
    }

    /// Change a product (see `catalog_admin::update`); returns it as it is now.
    pub async fn update_product(
        &self,
        slug: &str,
        patch: ProductPatch,
        actor: &Actor,
        now: Millis,
    ) -> Result<AdminProduct> {
        let (slug, actor) = (slug.to_owned(), actor.clone());
        self.write(move |tx| catalog_admin::update(tx, &slug, &patch, &actor, now))
            .await
    }

    /// Delete a product without orders, or hide one with orders.
    pub async fn remove_product(
        &self,
        slug: &str,
        actor: &Actor,
        now: Millis,
    ) -> Result<ProductRemoval> {
        let (slug, actor) = (slug.to_owned(), actor.clone());
        self.write(move |tx| catalog_admin::remove(tx, &slug, &actor, now))
            .await
    }

    // ---- coupons ----

    pub async fn coupons(&self) -> Result<Vec<Coupon>> {
        self.read(coupons::list).await
    }

    pub async fn coupon(&self, code: &CouponCode) -> Result<Coupon> {
        let code = code.clone();
        self.read(move |tx| coupons::get(tx, &code)).await
    }

    /// A new coupon (`CouponExists` if the code is taken), audited.
    pub async fn create_coupon(
        &self,
        code: &CouponCode,
        settings: CouponSettings,
        actor: &Actor,
        now: Millis,
    ) -> Result<Coupon> {
        let (code, actor) = (code.clone(), actor.clone());
        self.write(move |tx| coupons::create(tx, &code, &settings, &actor, now))
            .await
    }

    /// Change a coupon (see `coupons::update`); returns it as it is now.
    pub async fn update_coupon(
        &self,
        code: &CouponCode,
        patch: CouponPatch,
        actor: &Actor,
        now: Millis,
    ) -> Result<Coupon> {
        let (code, actor) = (code.clone(), actor.clone());
        self.write(move |tx| coupons::update(tx, &code, &patch, &actor, now))
            .await
    }

    /// Delete a coupon no order used, or disable one that orders used.
    pub async fn remove_coupon(
        &self,
        code: &CouponCode,
        actor: &Actor,
        now: Millis,
    ) -> Result<CouponRemoval> {
        let (code, actor) = (code.clone(), actor.clone());
        self.write(move |tx| coupons::remove(tx, &code, &actor, now))
            .await
    }

    // ---- orders ----

    /// Create a pending order and reserve its stock in one transaction.
    pub async fn create_order(&self, n: NewOrder) -> Result<CreatedOrder> {
        let ring = self.ring()?;
        self.write(move |tx| orders::create_order(tx, &ring, &n))
            .await
    }

    pub async fn order(&self, order_no: &OrderNo) -> Result<Option<Order>> {
        let no = order_no.as_str().to_owned();
        let ring = self.ring()?;
        self.read(move |tx| orders::order_by_no(tx, &ring, &no))
            .await
    }

    pub async fn list_orders(&self, filter: OrderFilter) -> Result<Vec<Order>> {
        let ring = self.ring()?;
        self.read(move |tx| orders_search::list_orders(tx, &ring, &filter))
            .await
    }

    /// The backend's plan for this search, one line per step: the index tests assert that
    /// every filter is answered from an index.
    pub async fn explain_order_search(&self, filter: OrderFilter) -> Result<Vec<String>> {
        self.read(move |tx| orders_search::explain(tx, &filter))
            .await
    }

    /// Orders placed with this email that have a query password, newest first.
    pub async fn orders_by_email(&self, email: &str, limit: u32) -> Result<Vec<Order>> {
        let email = email.to_owned();
        let ring = self.ring()?;
        self.read(move |tx| orders::orders_by_email(tx, &ring, &email, limit))
            .await
    }

    /// Remember the payment action (`qr`/`redirect` and its code or URL) of an order.
    pub async fn set_pay_action(
        &self,
        order_no: &OrderNo,
        action: &str,
        target: &str,
    ) -> Result<()> {
        let (no, action, target) = (
            order_no.as_str().to_owned(),
            action.to_owned(),
            target.to_owned(),
        );
        self.write(move |tx| orders::set_pay_action(tx, &no, &action, &target))
            .await
    }

    /// Record an alert signal on its own (for conditions noticed outside a store change;
    /// store functions that reveal one call `alert_signal::emit` in their transaction).
    pub async fn emit_alert(&self, signal: AlertSignal, now: Millis) -> Result<()> {
        self.write(move |tx| alert_signal::emit(tx, &signal, now))
            .await
    }

    /// Expire due unpaid orders (at most `limit`), returning their numbers.
    pub async fn expire_due(&self, now: Millis, limit: u32) -> Result<Vec<OrderNo>> {
        self.write(move |tx| orders::expire_due(tx, now, limit))
            .await
    }

    /// Expire an unpaid order at once, with a note for the seller saying why; false if it
    /// was not pending (nothing changed).
    pub async fn cancel_unpaid(
        &self,
        order_no: &OrderNo,
        note: Option<String>,
        now: Millis,
    ) -> Result<bool> {
        let no = order_no.as_str().to_owned();
        self.write(move |tx| orders::cancel_unpaid(tx, &no, note.as_deref(), now))
            .await
    }

    /// The seller cancels a pending order (after closing its trade at the channel): expired
    /// with `note`, stock back, and the audit row, in one commit. False if it was not
    /// pending (nothing changed, nothing audited).
    pub async fn cancel_by_seller(
        &self,
        order_no: &OrderNo,
        note: String,
        audit: AuditEntry,
        now: Millis,
    ) -> Result<bool> {
        let no = order_no.as_str().to_owned();
        self.write(move |tx| {
            let cancelled = orders::cancel_unpaid(tx, &no, Some(&note), now)?;
            if cancelled {
                audit::record(tx, &audit, now)?;
            }
            Ok(cancelled)
        })
        .await
    }

    /// Every payment attempt of an order, oldest first; `None`: no such order.
    pub async fn order_payments(&self, order_no: &OrderNo) -> Result<Option<Vec<OrderPayment>>> {
        let no = order_no.as_str().to_owned();
        self.read(move |tx| checks::order_payments(tx, &no)).await
    }

    /// Queue the buyer's mail of a delivered (keys) or fulfilled (content) order again, with
    /// the audit row, in one commit. False when the order has no such mail (another status).
    pub async fn requeue_order_mail(
        &self,
        order_no: &OrderNo,
        audit: AuditEntry,
        now: Millis,
    ) -> Result<bool> {
        let no = order_no.as_str().to_owned();
        self.write(move |tx| {
            let queued = outbox::requeue_order_mail(tx, &no, now)?;
            if queued {
                audit::record(tx, &audit, now)?;
            }
            Ok(queued)
        })
        .await
    }

    /// The seller fulfils an `awaiting_fulfilment` (manual) order with `content`: the order
    /// becomes `fulfilled` and keeps the content, in one commit. Another status →
    /// [`StoreError::InvalidStatus`], nothing changed.
    pub async fn fulfil_order(
        &self,
        order_no: &OrderNo,
        content: &str,
        audit: AuditEntry,
        now: Millis,
    ) -> Result<Order> {
        let (no, content) = (order_no.as_str().to_owned(), content.to_owned());
        let ring = self.ring()?;
        self.write_audited(audit, now, move |tx| {
            fulfilment::fulfil(tx, &ring, &no, &content, now)
        })
        .await
    }

    /// The seller delivers an `exception` order from stock (keys reserved and sold, the order
    /// `delivered`, the mail queued) with its audit row, in one commit.
    pub async fn deliver_exception(
        &self,
        order_no: &OrderNo,
        audit: AuditEntry,
        now: Millis,
    ) -> Result<Order> {
        let no = order_no.as_str().to_owned();
        let ring = self.ring()?;
        self.write_audited(audit, now, move |tx| {
            fulfilment::deliver_exception(tx, &ring, &no, now)
        })
        .await
    }

    // ---- payments ----

    /// Log a received notification and, if it is a verified payment, apply it — one commit.
    pub async fn record_notification(
        &self,
        event: RawEvent,
        verdict: Verdict,
    ) -> Result<NotifyOutcome> {
        Ok(self
            .record_payment_signal(event, verdict, FoundBy::Notify)
            .await?
            .outcome)
    }

    /// Log what a channel said about a payment (`found_by`: a notification, a query, a close,
    /// the seller's check, a bill) and, if it is a verified payment, apply it — one commit.
    /// A payment that moves its order to paid records its gateway pay time and `found_by`.
    pub async fn record_payment_signal(
        &self,
        event: RawEvent,
        verdict: Verdict,
        found_by: FoundBy,
    ) -> Result<Recorded> {
        self.write(move |tx| payments::record_notification(tx, &event, &verdict, found_by))
            .await
    }

    /// Delete up to `limit` unverified notifications received before `before` (retention);
    /// verified ones are kept forever. Returns how many were deleted.
    pub async fn purge_rejected_events(&self, before: Millis, limit: u32) -> Result<u64> {
        self.write(move |tx| payments::purge_rejected(tx, before, limit))
            .await
    }

    /// Notifications logged for an order's trade number, oldest first (at most 200).
    pub async fn payment_events(&self, order_no: &OrderNo) -> Result<Vec<PaymentEventSummary>> {
        let no = order_no.as_str().to_owned();
        self.read(move |tx| {
            tx.query(
                "SELECT channel_id, received_at, verified, outcome, detail, http_method, query, \
                 headers, body FROM payment_events WHERE trade_no = $1 ORDER BY id LIMIT 200",
                params![no.as_str()],
            )?
            .iter()
            .map(|r| {
                Ok(PaymentEventSummary {
                    channel_id: r.get("channel_id")?,
                    received_at: r.get("received_at")?,
                    verified: r.get("verified")?,
                    outcome: r.get("outcome")?,
                    detail: r.get("detail")?,
                    http_method: r.get("http_method")?,
                    query: r.get("query")?,
                    headers: r.get("headers")?,
                    body: r.get("body")?,
                })
            })
            .collect()
        })
        .await
    }

    // ---- active checks ----

    /// Claim up to `limit` payments due for a channel check, leased until `lease_until`.
    pub async fn claim_payment_checks(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<PaymentCheck>> {
        self.write(move |tx| checks::claim(tx, now, lease_until, limit))
            .await
    }

    /// The channel reports the trade refunded before delivery (see `checks::channel_reversal`).
    pub async fn record_channel_reversal(&self, order_no: &OrderNo, now: Millis) -> Result<bool> {
        let no = order_no.as_str().to_owned();
        self.write(move |tx| checks::channel_reversal(tx, &no, now))
            .await
    }

    /// Release a claimed check and schedule the next (`None`: stop checking).
    pub async fn reschedule_check(&self, payment_id: i64, next: Option<Millis>) -> Result<()> {
        self.write(move |tx| checks::reschedule(tx, payment_id, next))
            .await
    }

    // ---- refunds ----

    /// Record a pending refund (or find the existing one with this number).
    /// Start a refund (or find the one with this refund number); a new one gets its audit
    /// row in the same commit, a repeated request none.
    pub async fn begin_refund(
        &self,
        order_no: &OrderNo,
        refund: NewRefund,
        audit: AuditEntry,
    ) -> Result<RefundCall> {
        let no = order_no.as_str().to_owned();
        self.write(move |tx| {
            let call = refunds::begin(tx, &no, &refund)?;
            if !call.existing {
                let mut audit = audit.clone();
                audit.after = Some(serde_json::json!({
                    "refund_no": call.refund.refund_no,
                    "amount": call.refund.amount.minor(),
                    "currency": call.refund.amount.currency().code(),
                    "reason": refund.reason,
                }));
                audit::record(tx, &audit, refund.now)?;
            }
            Ok(call)
        })
        .await
    }

    /// Record the channel's answer for a pending refund.
    pub async fn finish_refund(
        &self,
        refund_no: &str,
        result: RefundResult,
        now: Millis,
    ) -> Result<RefundCall> {
        let no = refund_no.to_owned();
        self.write(move |tx| refunds::finish(tx, &no, &result, now))
            .await
    }

    pub async fn claim_pending_refunds(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<RefundCall>> {
        self.write(move |tx| refunds::claim_pending(tx, now, lease_until, limit))
            .await
    }

    pub async fn refunds(&self, order_no: &OrderNo) -> Result<Vec<Refund>> {
        let no = order_no.as_str().to_owned();
        self.read(move |tx| refunds::list_for_order(tx, &no)).await
    }

    // ---- outbox ----

    /// Claim up to `limit` due outbox rows of these kinds (in the order given), leased until
    /// `lease_until`: each claim counts an attempt, and no other claimer — in this process or
    /// another sharing the database — gets the row before the lease ends.
    pub async fn claim_outbox(
        &self,
        kinds: &[&str],
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<OutboxItem>> {
        let kinds: Vec<String> = kinds.iter().map(|k| (*k).to_owned()).collect();
        self.write(move |tx| outbox::claim(tx, &kinds, now, lease_until, limit))
            .await
    }

    /// A claimed row's work succeeded; false if the row was already finished.
    pub async fn complete_outbox(&self, id: i64, now: Millis) -> Result<bool> {
        self.write(move |tx| outbox::complete(tx, id, now)).await
    }

    /// A claimed row's work failed: record `error` and make it due again at `next_at`.
    /// `attempts` is the claim's [`OutboxItem::attempts`]; false if the row was re-claimed
    /// since (the lease ran out) or is finished.
    pub async fn reschedule_outbox(
        &self,
        id: i64,
        attempts: i64,
        next_at: Millis,
        error: &str,
    ) -> Result<bool> {
        let error = error.to_owned();
        self.write(move |tx| outbox::reschedule(tx, id, attempts, next_at, &error))
            .await
    }

    /// Finish a row without success (`error` says why); false if it was already finished.
    pub async fn give_up_outbox(&self, id: i64, now: Millis, error: &str) -> Result<bool> {
        let error = error.to_owned();
        self.write(move |tx| outbox::give_up(tx, id, now, &error))
            .await
    }

    /// Where the order's delivery mail stands: `None` when the order has no delivery to mail
    /// (not delivered, or unknown). Whether mail is configured at all is the server's to say.
    pub async fn mail_state(&self, order_no: &OrderNo) -> Result<Option<MailState>> {
        let no = order_no.as_str().to_owned();
        self.read(move |tx| outbox::mail_state(tx, &no)).await
    }

    // ---- admin ----

    /// Write one audit row on its own. Changes made by the store write theirs in their own
    /// transaction; this is for what has no store change (a login, an export).
    pub async fn record_audit(&self, entry: AuditEntry, now: Millis) -> Result<()> {
        self.write(move |tx| audit::record(tx, &entry, now)).await
    }

    /// Audit rows, newest first.
    pub async fn audit_log(&self, filter: AuditFilter) -> Result<Vec<AuditRecord>> {
        self.read(move |tx| audit::list(tx, &filter)).await
    }

    pub async fn create_admin_token(
        &self,
        name: &str,
        token_hash: &str,
        now: Millis,
    ) -> Result<()> {
        let (name, hash) = (name.to_owned(), token_hash.to_owned());
        self.write(move |tx| {
            tx.exec(
                "INSERT INTO admin_tokens (name, token_hash, created_at) VALUES ($1, $2, $3)",
                params![name.as_str(), hash.as_str(), now],
            )
            .map(|_| ())
        })
        .await
    }

    /// The token's name if `token_hash` belongs to a live admin token.
    pub async fn admin_token(&self, token_hash: &str) -> Result<Option<String>> {
        let hash = token_hash.to_owned();
        self.read(move |tx| {
            tx.query_opt(
                "SELECT name FROM admin_tokens WHERE token_hash = $1",
                params![hash.as_str()],
            )?
            .map(|r| r.get("name"))
            .transpose()
        })
        .await
    }

    pub async fn create_admin_user(
        &self,
        name: &str,
        password_hash: &str,
        now: Millis,
    ) -> Result<bool> {
        let (name, hash) = (name.to_owned(), password_hash.to_owned());
        self.write(move |tx| {
            Ok(tx.exec(
                "INSERT INTO admin_users (name, password_hash, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
                params![name.as_str(), hash.as_str(), now],
            )? == 1)
        })
        .await
    }

    /// Numbers for `/metrics`.
    pub async fn counts(&self) -> Result<Counts> {
        self.read(|tx| {
            let orders_by_status = tx
                .query("SELECT status, COUNT(*) AS n FROM orders GROUP BY status ORDER BY status", &[])?
                .iter()
                .map(|r| Ok((r.get("status")?, r.get("n")?)))
                .collect::<Result<_>>()?;
            let cards = tx.query_one(
                "SELECT COALESCE(SUM(CASE WHEN status = $1 AND is_loop = 0 THEN 1 ELSE 0 END), 0) AS available, \
                        COALESCE(SUM(CASE WHEN status = $2 THEN 1 ELSE 0 END), 0) AS sold FROM cards",
                params![CardStatus::Available, CardStatus::Sold],
            )?;
            Ok(Counts {
                orders_by_status,
                cards_available: cards.get("available")?,
                cards_sold: cards.get("sold")?,
            })
        })
        .await
    }

    /// Liveness probe: one trivial read.
    pub async fn ping(&self) -> Result<()> {
        self.read(|tx| tx.query_one("SELECT 1", &[]).map(|_| ()))
            .await
    }

    // ---- settings ----

    /// Every setting saved in the console (secrets opened), with their version.
    pub async fn settings(&self) -> Result<SavedSettings> {
        let ring = self.ring()?;
        self.read(move |tx| settings::load(tx, &ring)).await
    }

    /// The saved settings' version: it changes with every saved change (a cheap poll).
    pub async fn settings_version(&self) -> Result<i64> {
        self.read(settings::version).await
    }

    /// Save settings (a value, or `None` to remove a key's row) once `check` accepts the
    /// values they make, with the audit row, in one commit; `check`'s refusal is
    /// [`StoreError::InvalidInput`] and nothing is written. Returns what is saved now.
    pub async fn save_settings(
        &self,
        changes: SettingsChanges,
        check: SettingsCheck,
        actor: &Actor,
        now: Millis,
    ) -> Result<SavedSettings> {
        let ring = self.ring()?;
        let actor = actor.clone();
        self.write(move |tx| settings::save(tx, &ring, &changes, &check, &actor, now))
            .await
    }
}
