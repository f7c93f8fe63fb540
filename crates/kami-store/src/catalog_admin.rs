//! The seller changing the catalogue: editing a product (what depends on its current row is
//! checked here, under its row lock), and deleting one (hidden instead when orders point at
//! it). Each change writes its audit row, with the changed fields before and after, in the
//! transaction that makes it.

use kami_core::{InputFields, Millis, Money, PriceTiers, Pricing};
use serde_json::{json, Map, Value};

use crate::audit;
use crate::catalog;
use crate::db::Tx;
use crate::error::{Result, StoreError};
use crate::model::{Actor, AdminProduct, AuditEntry, ProductPatch, ProductRemoval};
use crate::params;

/// The editable columns of a product, as stored.
#[derive(Clone, PartialEq)]
struct Editable {
    title: String,
    price: i64,
    description: String,
    category: String,
    visible: bool,
    tiers: String,
    min_quantity: i64,
    max_quantity: i64,
    sort_order: i64,
    input_fields: String,
}

impl Editable {
    /// Each field as the API shows it, by its API name.
    fn fields(&self) -> Result<Vec<(&'static str, Value)>> {
        let tiers = PriceTiers::parse(&self.tiers)
            .map_err(|e| StoreError::Corrupt(format!("product pricing: {e}")))?;
        let tiers: Vec<Value> = tiers
            .tiers()
            .iter()
            .map(|t| json!({"min_quantity": t.min_quantity(), "price": t.unit_minor()}))
            .collect();
        let input_fields: Value = serde_json::from_str(&self.input_fields)
            .map_err(|e| StoreError::Corrupt(format!("product input fields: {e}")))?;
        Ok(vec![
            ("title", json!(self.title)),
            ("price", json!(self.price)),
            ("description", json!(self.description)),
            ("category", json!(self.category)),
            ("visible", json!(self.visible)),
            ("tiers", json!(tiers)),
            ("min_quantity", json!(self.min_quantity)),
            ("max_quantity", json!(self.max_quantity)),
            ("sort_order", json!(self.sort_order)),
            ("input_fields", input_fields),
        ])
    }
}

fn apply(cur: &Editable, p: &ProductPatch) -> Editable {
    let or = |new: &Option<String>, old: &String| new.clone().unwrap_or_else(|| old.clone());
    Editable {
        title: or(&p.title, &cur.title),
        price: p.price.unwrap_or(cur.price),
        description: or(&p.description, &cur.description),
        category: or(&p.category, &cur.category),
        visible: p.visible.unwrap_or(cur.visible),
        tiers: p
            .tiers
            .as_ref()
            .map_or_else(|| cur.tiers.clone(), PriceTiers::to_string),
        min_quantity: p.min_quantity.unwrap_or(cur.min_quantity),
        max_quantity: p.max_quantity.unwrap_or(cur.max_quantity),
        sort_order: p.sort_order.unwrap_or(cur.sort_order),
        input_fields: p
            .input_fields
            .as_ref()
            .map_or_else(|| cur.input_fields.clone(), InputFields::to_json),
    }
}

/// Apply `patch` to the product `slug`. The price is in the product's currency; price, tiers
/// and limits must fit together as they will be after the change
/// ([`StoreError::InvalidPricing`], nothing changed). Orders already placed keep their
/// amount; the next one is charged the new price. No audit row when nothing changes.
pub(crate) fn update(
    tx: &mut dyn Tx,
    slug: &str,
    patch: &ProductPatch,
    actor: &Actor,
    now: Millis,
) -> Result<AdminProduct> {
    let r = tx
        .query_opt(
            "SELECT id, title, price, currency, description, category, active, price_tiers, \
               min_quantity, max_quantity, sort_order, input_fields \
             FROM products WHERE slug = $1 FOR UPDATE",
            params![slug],
        )?
        .ok_or(StoreError::ProductNotFound)?;
    let id: i64 = r.get("id")?;
    let currency = r.get("currency")?;
    let cur = Editable {
        title: r.get("title")?,
        price: r.get("price")?,
        description: r.get("description")?,
        category: r.get("category")?,
        visible: r.get("active")?,
        tiers: r.get("price_tiers")?,
        min_quantity: r.get("min_quantity")?,
        max_quantity: r.get("max_quantity")?,
        sort_order: r.get("sort_order")?,
        input_fields: r.get("input_fields")?,
    };
    let new = apply(&cur, patch);
    let invalid = |e: &dyn std::fmt::Display| StoreError::InvalidPricing(e.to_string());
    let price = Money::new(new.price, currency).map_err(|e| invalid(&e))?;
    let tiers = PriceTiers::parse(&new.tiers).map_err(|e| invalid(&e))?;
    Pricing::new(price, tiers, new.min_quantity, new.max_quantity).map_err(|e| invalid(&e))?;
    if new == cur {
        return catalog::admin_product(tx, slug);
    }
    tx.exec(
        "UPDATE products SET title = $2, price = $3, description = $4, category = $5, active = $6, \
           price_tiers = $7, min_quantity = $8, max_quantity = $9, sort_order = $10, input_fields = $11 \
         WHERE id = $1",
        params![
            id,
            new.title.as_str(),
            new.price,
            new.description.as_str(),
            new.category.as_str(),
            new.visible,
            new.tiers.as_str(),
            new.min_quantity,
            new.max_quantity,
            new.sort_order,
            new.input_fields.as_str()
        ],
    )?;
    let (mut before, mut after) = (Map::new(), Map::new());
    for ((name, old), (_, value)) in cur.fields()?.into_iter().zip(new.fields()?) {
        if old != value {
            before.insert(name.to_owned(), old);
            after.insert(name.to_owned(), value);
        }
    }
    audit::record(
        tx,
        &AuditEntry {
            actor: actor.actor.clone(),
            action: "product.update".into(),
            target: format!("product:{slug}"),
            ip: actor.ip.clone(),
            before: Some(Value::Object(before)),
            after: Some(Value::Object(after)),
        },
        now,
    )?;
    catalog::admin_product(tx, slug)
}

/// Delete a product no order points at, with its keys and import batches; one with orders is
/// hidden instead (its orders, and the keys they hold, stay readable).
pub(crate) fn remove(
    tx: &mut dyn Tx,
    slug: &str,
    actor: &Actor,
    now: Millis,
) -> Result<ProductRemoval> {
    // The row lock makes a concurrent order's insert (whose foreign key needs the row) wait
    // for this decision, and fail if the product is gone.
    let r = tx
        .query_opt(
            "SELECT id, active FROM products WHERE slug = $1 FOR UPDATE",
            params![slug],
        )?
        .ok_or(StoreError::ProductNotFound)?;
    let id: i64 = r.get("id")?;
    let visible: bool = r.get("active")?;
    let has_orders = tx
        .query_opt(
            "SELECT 1 AS one FROM orders WHERE product_id = $1 LIMIT 1",
            params![id],
        )?
        .is_some();
    let mut entry = AuditEntry {
        actor: actor.actor.clone(),
        action: String::new(),
        target: format!("product:{slug}"),
        ip: actor.ip.clone(),
        before: None,
        after: None,
    };
    let removal = if has_orders {
        tx.exec("UPDATE products SET active = 0 WHERE id = $1", params![id])?;
        entry.action = "product.hide".into();
        entry.before = Some(json!({"visible": visible}));
        entry.after = Some(json!({"visible": false}));
        ProductRemoval::Hidden
    } else {
        let keys = tx.exec("DELETE FROM cards WHERE product_id = $1", params![id])?;
        tx.exec(
            "DELETE FROM card_batches WHERE product_id = $1",
            params![id],
        )?;
        tx.exec("DELETE FROM products WHERE id = $1", params![id])?;
        entry.action = "product.delete".into();
        entry.before = Some(json!({"visible": visible, "unsold_keys": keys}));
        ProductRemoval::Deleted
    };
    audit::record(tx, &entry, now)?;
    Ok(removal)
}
