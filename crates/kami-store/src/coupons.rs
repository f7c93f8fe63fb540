//! Coupons: the seller's list (create, edit, delete or disable, each audited in its
//! transaction) and their use by orders: redeemed in the order's transaction under the
//! coupon's row lock, the use counted with a compare-and-set against the cap, and given back
//! when the unpaid order expires or is cancelled.

use kami_core::{
    BasisPoints, CouponCode, CouponRefusal, CouponRules, CouponValue, Currency, Discounted, Email,
    Millis, Money, OrderStatus, Slug,
};
use serde_json::{json, Map, Value};

use crate::audit;
use crate::db::{Row, Tx};
use crate::error::{Result, StoreError};
use crate::model::Actor;
use crate::params;

/// Fixed (an amount) or percent (basis points).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CouponKind {
    Fixed,
    Percent,
}

impl CouponKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CouponKind::Fixed => "fixed",
            CouponKind::Percent => "percent",
        }
    }
    pub fn parse(s: &str) -> Option<CouponKind> {
        match s {
            "fixed" => Some(CouponKind::Fixed),
            "percent" => Some(CouponKind::Percent),
            _ => None,
        }
    }
}

/// A coupon's settings as the seller edits them (each value parsed on its own; whether they
/// fit together is [`CouponSettings::rules`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponSettings {
    pub kind: CouponKind,
    /// Minor units of `currency` (fixed) or basis points (percent).
    pub value: i64,
    /// Required for a fixed coupon and for a minimum amount; orders in other currencies are
    /// refused.
    pub currency: Option<Currency>,
    /// Empty: every product.
    pub products: Vec<Slug>,
    pub valid_from: Option<Millis>,
    pub valid_to: Option<Millis>,
    /// Total uses (`None`: no cap).
    pub max_uses: Option<i64>,
    pub once_per_email: bool,
    /// Minor units of `currency`.
    pub min_amount: Option<i64>,
    pub enabled: bool,
}

impl CouponSettings {
    /// The rules these settings make, or what does not fit.
    pub fn rules(&self) -> Result<CouponRules, String> {
        let money = |minor: i64, what: &str| -> Result<Money, String> {
            let c = self
                .currency
                .ok_or_else(|| format!("{what} needs a currency"))?;
            Money::new(minor, c).map_err(|e| format!("{what}: {e}"))
        };
        let value = match self.kind {
            CouponKind::Fixed => {
                if self.value < 1 {
                    return Err("a fixed coupon takes off at least 1 minor unit".into());
                }
                CouponValue::Fixed(money(self.value, "a fixed coupon")?)
            }
            CouponKind::Percent => {
                CouponValue::Percent(BasisPoints::new(self.value).map_err(|e| e.to_string())?)
            }
        };
        if let (Some(from), Some(to)) = (self.valid_from, self.valid_to) {
            if to <= from {
                return Err("valid_to must be after valid_from".into());
            }
        }
        if self.max_uses.is_some_and(|n| n < 0) {
            return Err("max_uses must not be negative".into());
        }
        Ok(CouponRules {
            value,
            products: self.products.clone(),
            valid_from: self.valid_from,
            valid_to: self.valid_to,
            min_amount: self
                .min_amount
                .map(|m| money(m, "a minimum amount"))
                .transpose()?,
            enabled: self.enabled,
        })
    }

    /// Each setting as the API shows it, by its API name.
    fn fields(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("kind", json!(self.kind.as_str())),
            ("value", json!(self.value)),
            ("currency", json!(self.currency.map(Currency::code))),
            ("products", json!(self.products)),
            ("valid_from", json!(self.valid_from)),
            ("valid_to", json!(self.valid_to)),
            ("max_uses", json!(self.max_uses)),
            ("once_per_email", json!(self.once_per_email)),
            ("min_amount", json!(self.min_amount)),
            ("enabled", json!(self.enabled)),
        ]
    }
}

/// A coupon as the seller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coupon {
    pub code: CouponCode,
    pub settings: CouponSettings,
    /// Uses held by orders that are paid or still pending.
    pub used: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A change to a coupon: `None` keeps the setting; `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct CouponPatch {
    pub kind: Option<CouponKind>,
    pub value: Option<i64>,
    pub currency: Option<Option<Currency>>,
    pub products: Option<Vec<Slug>>,
    pub valid_from: Option<Option<Millis>>,
    pub valid_to: Option<Option<Millis>>,
    pub max_uses: Option<Option<i64>>,
    pub once_per_email: Option<bool>,
    pub min_amount: Option<Option<i64>>,
    pub enabled: Option<bool>,
}

impl CouponPatch {
    pub fn apply(&self, cur: &CouponSettings) -> CouponSettings {
        CouponSettings {
            kind: self.kind.unwrap_or(cur.kind),
            value: self.value.unwrap_or(cur.value),
            currency: self.currency.unwrap_or(cur.currency),
            products: self
                .products
                .clone()
                .unwrap_or_else(|| cur.products.clone()),
            valid_from: self.valid_from.unwrap_or(cur.valid_from),
            valid_to: self.valid_to.unwrap_or(cur.valid_to),
            max_uses: self.max_uses.unwrap_or(cur.max_uses),
            once_per_email: self.once_per_email.unwrap_or(cur.once_per_email),
            min_amount: self.min_amount.unwrap_or(cur.min_amount),
            enabled: self.enabled.unwrap_or(cur.enabled),
        }
    }
}

/// What removing a coupon did: deleted, or disabled because orders used it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CouponRemoval {
    Deleted,
    Disabled,
}

/// A coupon applied to a new order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Redeemed {
    pub id: i64,
    pub discounted: Discounted,
}

fn from_row(r: &Row) -> Result<Coupon> {
    let code: String = r.get("code")?;
    let kind: String = r.get("kind")?;
    let products: Vec<String> = serde_json::from_str(&r.get::<String>("products")?)
        .map_err(|e| StoreError::Corrupt(format!("coupon products: {e}")))?;
    Ok(Coupon {
        code: CouponCode::parse(&code)
            .map_err(|e| StoreError::Corrupt(format!("coupon code {code:?}: {e}")))?,
        settings: CouponSettings {
            kind: CouponKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("coupon kind {kind:?}")))?,
            value: r.get("value")?,
            currency: r.get("currency")?,
            products: products
                .iter()
                .map(|s| Slug::parse(s))
                .collect::<Result<_, _>>()?,
            valid_from: r.get("valid_from")?,
            valid_to: r.get("valid_to")?,
            max_uses: r.get("max_uses")?,
            once_per_email: r.get("once_per_email")?,
            min_amount: r.get("min_amount")?,
            enabled: r.get("enabled")?,
        },
        used: r.get("used")?,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
    })
}

fn products_json(s: &CouponSettings) -> String {
    json!(s.products).to_string()
}

fn refuse_bad(s: &CouponSettings) -> Result<()> {
    s.rules()
        .map(|_| ())
        .map_err(StoreError::InvalidCouponSettings)
}

pub(crate) fn list(tx: &mut dyn Tx) -> Result<Vec<Coupon>> {
    tx.query(
        "SELECT id, code, kind, value, currency, products, valid_from, valid_to, \
           max_uses, used, once_per_email, min_amount, enabled, created_at, updated_at \
         FROM coupons ORDER BY id DESC",
        params![],
    )?
    .iter()
    .map(from_row)
    .collect()
}

pub(crate) fn get(tx: &mut dyn Tx, code: &CouponCode) -> Result<Coupon> {
    let r = tx
        .query_opt(
            "SELECT id, code, kind, value, currency, products, valid_from, valid_to, \
               max_uses, used, once_per_email, min_amount, enabled, created_at, updated_at \
             FROM coupons WHERE code = $1",
            params![code.as_str()],
        )?
        .ok_or(StoreError::CouponNotFound)?;
    from_row(&r)
}

pub(crate) fn create(
    tx: &mut dyn Tx,
    code: &CouponCode,
    s: &CouponSettings,
    actor: &Actor,
    now: Millis,
) -> Result<Coupon> {
    refuse_bad(s)?;
    if tx
        .query_opt(
            "SELECT id FROM coupons WHERE code = $1",
            params![code.as_str()],
        )?
        .is_some()
    {
        return Err(StoreError::CouponExists);
    }
    tx.exec(
        "INSERT INTO coupons (code, kind, value, currency, products, valid_from, valid_to, \
           max_uses, once_per_email, min_amount, enabled, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
        params![
            code.as_str(),
            s.kind.as_str(),
            s.value,
            s.currency.map(Currency::code),
            products_json(s),
            s.valid_from,
            s.valid_to,
            s.max_uses,
            s.once_per_email,
            s.min_amount,
            s.enabled,
            now
        ],
    )?;
    let after: Map<String, Value> = s
        .fields()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let entry = actor.entry(
        "coupon.create",
        format!("coupon:{code}"),
        None,
        Some(Value::Object(after)),
    );
    audit::record(tx, &entry, now)?;
    get(tx, code)
}

fn locked(tx: &mut dyn Tx, code: &CouponCode) -> Result<(i64, Coupon)> {
    let r = tx
        .query_opt(
            "SELECT id, code, kind, value, currency, products, valid_from, valid_to, \
               max_uses, used, once_per_email, min_amount, enabled, created_at, updated_at \
             FROM coupons WHERE code = $1 FOR UPDATE",
            params![code.as_str()],
        )?
        .ok_or(StoreError::CouponNotFound)?;
    Ok((r.get("id")?, from_row(&r)?))
}

/// Change a coupon under its row lock; no audit row when nothing changes. A cap below the
/// uses already held is refused.
pub(crate) fn update(
    tx: &mut dyn Tx,
    code: &CouponCode,
    patch: &CouponPatch,
    actor: &Actor,
    now: Millis,
) -> Result<Coupon> {
    let (id, cur) = locked(tx, code)?;
    let new = patch.apply(&cur.settings);
    if new == cur.settings {
        return Ok(cur);
    }
    refuse_bad(&new)?;
    if new.max_uses.is_some_and(|cap| cap < cur.used) {
        return Err(StoreError::InvalidCouponSettings(format!(
            "max_uses cannot be below the {} uses already held by orders",
            cur.used
        )));
    }
    tx.exec(
        "UPDATE coupons SET kind = $2, value = $3, currency = $4, products = $5, valid_from = $6, \
           valid_to = $7, max_uses = $8, once_per_email = $9, min_amount = $10, enabled = $11, \
           updated_at = $12 WHERE id = $1",
        params![
            id,
            new.kind.as_str(),
            new.value,
            new.currency.map(Currency::code),
            products_json(&new),
            new.valid_from,
            new.valid_to,
            new.max_uses,
            new.once_per_email,
            new.min_amount,
            new.enabled,
            now
        ],
    )?;
    let (mut before, mut after) = (Map::new(), Map::new());
    for ((name, old), (_, value)) in cur.settings.fields().into_iter().zip(new.fields()) {
        if old != value {
            before.insert(name.to_owned(), old);
            after.insert(name.to_owned(), value);
        }
    }
    let entry = actor.entry(
        "coupon.update",
        format!("coupon:{code}"),
        Some(Value::Object(before)),
        Some(Value::Object(after)),
    );
    audit::record(tx, &entry, now)?;
    get(tx, code)
}

/// Delete a coupon no order used; one that orders used is disabled instead (their records
/// keep pointing at it).
pub(crate) fn remove(
    tx: &mut dyn Tx,
    code: &CouponCode,
    actor: &Actor,
    now: Millis,
) -> Result<CouponRemoval> {
    let (id, cur) = locked(tx, code)?;
    let used = tx
        .query_opt(
            "SELECT 1 AS one FROM orders WHERE coupon_id = $1 LIMIT 1",
            params![id],
        )?
        .is_some();
    let target = format!("coupon:{code}");
    let (removal, entry) = if used {
        tx.exec(
            "UPDATE coupons SET enabled = 0, updated_at = $2 WHERE id = $1",
            params![id, now],
        )?;
        let entry = actor.entry(
            "coupon.disable",
            target,
            Some(json!({"enabled": cur.settings.enabled})),
            Some(json!({"enabled": false})),
        );
        (CouponRemoval::Disabled, entry)
    } else {
        tx.exec("DELETE FROM coupons WHERE id = $1", params![id])?;
        let entry = actor.entry(
            "coupon.delete",
            target,
            Some(json!({"enabled": cur.settings.enabled, "used": cur.used})),
            None,
        );
        (CouponRemoval::Deleted, entry)
    };
    audit::record(tx, &entry, now)?;
    Ok(removal)
}

/// Apply `code` to an order of `product` totalling `total` for `email`, in the order's
/// transaction: the coupon row is locked first, so concurrent orders with one coupon are
/// decided one after the other; the use is taken by a compare-and-set against the cap.
pub(crate) fn redeem(
    tx: &mut dyn Tx,
    code: &CouponCode,
    product: &Slug,
    total: Money,
    email: &Email,
    now: Millis,
) -> Result<Redeemed> {
    let refuse = StoreError::InvalidCoupon;
    let (id, coupon) = match locked(tx, code) {
        Err(StoreError::CouponNotFound) => return Err(refuse(CouponRefusal::Unknown)),
        other => other?,
    };
    let rules = coupon
        .settings
        .rules()
        .map_err(|e| StoreError::Corrupt(format!("coupon {code}: {e}")))?;
    let discounted = rules.check(now, product, total).map_err(refuse)?;
    // "Once per email" counts the orders that hold a use: paid ones and pending ones.
    if coupon.settings.once_per_email
        && tx
            .query_opt(
                "SELECT 1 AS one FROM orders WHERE coupon_id = $1 AND email = $2 AND status <> $3 LIMIT 1",
                params![id, email.as_str(), OrderStatus::Expired],
            )?
            .is_some()
    {
        return Err(refuse(CouponRefusal::AlreadyUsedByEmail));
    }
    let took = tx.exec(
        "UPDATE coupons SET used = used + 1 WHERE id = $1 AND (max_uses IS NULL OR used < max_uses)",
        params![id],
    )?;
    if took != 1 {
        return Err(refuse(CouponRefusal::UsedUp));
    }
    Ok(Redeemed { id, discounted })
}

/// Give back the use an unpaid order held (it expired or was cancelled).
pub(crate) fn release(tx: &mut dyn Tx, order_id: i64) -> Result<()> {
    tx.exec(
        "UPDATE coupons SET used = used - 1 \
         WHERE used > 0 AND id = (SELECT coupon_id FROM orders WHERE id = $1)",
        params![order_id],
    )?;
    Ok(())
}
