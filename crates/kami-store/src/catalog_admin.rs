//! The seller changing the catalogue: editing a product (what depends on its current row is
//! checked here, under its row lock), and deleting one (hidden instead when orders point at
//! it). Each change writes its audit row, with the changed fields before and after, in the
//! transaction that makes it.

use kami_core::{InputFields, Millis, Money, OwnPrices, PriceTiers, Pricing};
use serde_json::{json, Map, Value};

use crate::audit;
use crate::catalog;
use crate::categories::{self, Direction};
use crate::db::Tx;
use crate::error::{Result, StoreError};
use crate::model::{Actor, AdminProduct, AuditEntry, NewProduct, ProductPatch, ProductRemoval};
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
    /// [`OwnPrices`] as stored.
    prices: String,
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
            ("prices", json!(self.prices)),
        ])
    }
}

/// `p` over `cur`; `prices` is the patch's own prices, checked and in their stored form.
fn apply(cur: &Editable, p: &ProductPatch, prices: Option<String>) -> Editable {
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
        prices: prices.unwrap_or_else(|| cur.prices.clone()),
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
               min_quantity, max_quantity, sort_order, input_fields, prices \
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
        prices: r.get("prices")?,
    };
    let invalid = |e: &dyn std::fmt::Display| StoreError::InvalidPricing(e.to_string());
    let prices = patch
        .prices
        .as_ref()
        .map(|p| OwnPrices::new(p.clone(), currency).map(|p| p.to_string()))
        .transpose()
        .map_err(|e| invalid(&e))?;
    let new = apply(&cur, patch, prices);
    let price = Money::new(new.price, currency).map_err(|e| invalid(&e))?;
    let tiers = PriceTiers::parse(&new.tiers).map_err(|e| invalid(&e))?;
    Pricing::new(price, tiers, new.min_quantity, new.max_quantity).map_err(|e| invalid(&e))?;
    if new == cur {
        return catalog::admin_product(tx, slug);
    }
    if new.category != cur.category {
        categories::ensure(tx, &new.category, now)?;
    }
    tx.exec(
        "UPDATE products SET title = $2, price = $3, description = $4, category = $5, active = $6, \
           price_tiers = $7, min_quantity = $8, max_quantity = $9, sort_order = $10, input_fields = $11, \
           prices = $12 \
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
            new.input_fields.as_str(),
            new.prices.as_str()
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

/// A new product with the buyer's input fields, its group created if new, and its audit row
/// (every field, after) — one commit. [`StoreError::ProductExists`] when the slug is taken.
pub(crate) fn create(
    tx: &mut dyn Tx,
    p: &NewProduct,
    input_fields: &InputFields,
    visible: bool,
    actor: &Actor,
    now: Millis,
) -> Result<AdminProduct> {
    catalog::create_product(tx, p, now)?;
    let slug = p.slug.as_str();
    tx.exec(
        "UPDATE products SET input_fields = $2, active = $3 WHERE slug = $1",
        params![slug, input_fields.to_json(), visible],
    )?;
    let row = Editable {
        title: p.title.clone(),
        price: p.price.minor(),
        description: p.description.clone(),
        category: p.category.clone(),
        visible,
        tiers: p.tiers.to_string(),
        min_quantity: p.min_quantity,
        max_quantity: p.max_quantity,
        sort_order: p.sort_order,
        input_fields: input_fields.to_json(),
        // Checked by `create_product` above.
        prices: OwnPrices::new(p.prices.clone(), p.price.currency())
            .map_err(|e| StoreError::InvalidPricing(e.to_string()))?
            .to_string(),
    };
    let mut after = Map::new();
    after.insert("slug".into(), json!(slug));
    after.insert("currency".into(), json!(p.price.currency().code()));
    after.insert("delivery".into(), json!(p.delivery.as_str()));
    after.insert("stock".into(), json!(p.manual_stock));
    for (name, value) in row.fields()? {
        after.insert(name.to_owned(), value);
    }
    let entry = actor.entry(
        "product.create",
        format!("product:{slug}"),
        None,
        Some(Value::Object(after)),
    );
    audit::record(tx, &entry, now)?;
    catalog::admin_product(tx, slug)
}

/// A product's picture and thumbnail (media file names; `None` removes the picture), audited
/// with the names before and after. Returns the product and the names it had.
pub(crate) fn set_image(
    tx: &mut dyn Tx,
    slug: &str,
    image: Option<&(String, String)>,
    actor: &Actor,
    now: Millis,
) -> Result<(AdminProduct, [Option<String>; 2])> {
    let r = tx
        .query_opt(
            "SELECT id, image, image_thumb FROM products WHERE slug = $1 FOR UPDATE",
            params![slug],
        )?
        .ok_or(StoreError::ProductNotFound)?;
    let id: i64 = r.get("id")?;
    let old: [Option<String>; 2] = [r.get("image")?, r.get("image_thumb")?];
    let new = [image.map(|i| i.0.clone()), image.map(|i| i.1.clone())];
    if old != new {
        tx.exec(
            "UPDATE products SET image = $2, image_thumb = $3 WHERE id = $1",
            params![id, new[0].as_deref(), new[1].as_deref()],
        )?;
        let entry = actor.entry(
            if image.is_some() {
                "product.image"
            } else {
                "product.image_remove"
            },
            format!("product:{slug}"),
            Some(json!({"image": old[0], "image_thumb": old[1]})),
            Some(json!({"image": new[0], "image_thumb": new[1]})),
        );
        audit::record(tx, &entry, now)?;
    }
    Ok((catalog::admin_product(tx, slug)?, old))
}

/// Whether any product shows this media file.
pub(crate) fn media_in_use(tx: &mut dyn Tx, name: &str) -> Result<bool> {
    Ok(tx
        .query_opt(
            "SELECT id FROM products WHERE image = $1 OR image_thumb = $1 LIMIT 1",
            params![name],
        )?
        .is_some())
}

/// Move a product one place up or down within its group (the group is numbered again:
/// `categories::STEP` apart), audited with every position that changed. False: it was
/// already first (last).
pub(crate) fn move_product(
    tx: &mut dyn Tx,
    slug: &str,
    dir: Direction,
    actor: &Actor,
    now: Millis,
) -> Result<bool> {
    let category: String = tx
        .query_opt(
            "SELECT category FROM products WHERE slug = $1 FOR UPDATE",
            params![slug],
        )?
        .ok_or(StoreError::ProductNotFound)?
        .get("category")?;
    let rows = tx.query(
        "SELECT id, slug, sort_order FROM products WHERE category = $1 \
         ORDER BY sort_order, id FOR UPDATE",
        params![category.as_str()],
    )?;
    let mut list: Vec<(i64, String, i64)> = Vec::with_capacity(rows.len());
    for r in &rows {
        list.push((r.get("id")?, r.get("slug")?, r.get("sort_order")?));
    }
    let Some(at) = list.iter().position(|p| p.1 == slug) else {
        return Err(StoreError::ProductNotFound);
    };
    let sorts: Vec<i64> = list.iter().map(|p| p.2).collect();
    let Some(changes) = categories::moved_positions(&sorts, at, dir) else {
        return Ok(false);
    };
    let (mut before, mut after) = (Map::new(), Map::new());
    for (idx, want) in changes {
        let Some((id, s, old)) = list.get(idx) else {
            continue;
        };
        tx.exec(
            "UPDATE products SET sort_order = $2 WHERE id = $1",
            params![*id, want],
        )?;
        before.insert(s.clone(), json!(old));
        after.insert(s.clone(), json!(want));
    }
    let entry = actor.entry(
        "product.move",
        format!("product:{slug}"),
        Some(json!({ "sort_order": before })),
        Some(json!({ "sort_order": after })),
    );
    audit::record(tx, &entry, now)?;
    Ok(true)
}

impl crate::Store {
    /// A new product (see [`create`]): audited, its group created if new.
    pub async fn create_product_audited(
        &self,
        p: NewProduct,
        input_fields: InputFields,
        visible: bool,
        actor: &Actor,
        now: Millis,
    ) -> Result<AdminProduct> {
        let actor = actor.clone();
        self.write(move |tx| create(tx, &p, &input_fields, visible, &actor, now))
            .await
    }

    /// Set (`Some((picture, thumbnail))`) or remove a product's picture, audited; returns the
    /// product and the media names it had (`[picture, thumbnail]`).
    pub async fn set_product_image(
        &self,
        slug: &str,
        image: Option<(String, String)>,
        actor: &Actor,
        now: Millis,
    ) -> Result<(AdminProduct, [Option<String>; 2])> {
        let (slug, actor) = (slug.to_owned(), actor.clone());
        self.write(move |tx| set_image(tx, &slug, image.as_ref(), &actor, now))
            .await
    }

    /// Whether any product shows the media file `name`.
    pub async fn media_in_use(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.read(move |tx| media_in_use(tx, &name)).await
    }

    /// Move a product one place within its group (see [`move_product`]).
    pub async fn move_product(
        &self,
        slug: &str,
        dir: Direction,
        actor: &Actor,
        now: Millis,
    ) -> Result<bool> {
        let (slug, actor) = (slug.to_owned(), actor.clone());
        self.write(move |tx| move_product(tx, &slug, dir, &actor, now))
            .await
    }
}
