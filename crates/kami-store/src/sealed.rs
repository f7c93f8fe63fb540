//! Sealing secrets at rest: AES-256-GCM (aws-lc-rs) under a 32-byte master key, one random
//! 96-bit nonce per value, bound to its place (table, column, row owner) by associated data.
//!
//! The stored form is `[0xF8][key id: 8][nonce: 12][ciphertext][tag: 16]`. The first byte is
//! a format version that never starts valid UTF-8, so a sealed value can never be mistaken
//! for a legacy plain-text one. The key id (an HMAC of a label under the key, not the key)
//! names which key of a [`Keyring`] opens the value, so several keys can be live at once
//! while `kami keys rotate` moves every value to a new one.
//!
//! Keys are never printed: [`MasterKey`] and [`Keyring`] have hand-written `Debug`s that
//! show only key ids. Each master key derives two subkeys with HMAC-SHA256 and a label: the
//! AEAD key and the key of [`Keyring::hash`], the keyed hash imports de-duplicate on.

use std::fmt;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use crate::error::{Result, StoreError};

/// First byte of every sealed value (format version 1). 0xF8 never occurs in UTF-8.
pub const SEALED_V1: u8 = 0xF8;
/// Bytes of a key id.
pub const KEY_ID_LEN: usize = 8;
/// Bytes of a master key.
pub const MASTER_KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
/// What sealing adds to a value's length.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// What the key-check value of a key seals (see [`Keyring::check_value`]).
const CHECK_PLAINTEXT: &[u8] = b"kami master key check v1";
const CHECK_AAD: &[u8] = b"kami/kami_keys.check_value";

/// Which key sealed a value: the first [`KEY_ID_LEN`] bytes of HMAC-SHA256(key, label).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn from_slice(b: &[u8]) -> Option<KeyId> {
        b.try_into().ok().map(KeyId)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// One 32-byte master key with its derived subkeys. The bytes stay inside.
pub struct MasterKey {
    id: KeyId,
    aead: LessSafeKey,
    hash: hmac::Key,
    /// Kept to write the key file; never shown.
    raw: [u8; MASTER_KEY_LEN],
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish()
    }
}

fn derive(key: &hmac::Key, label: &[u8]) -> hmac::Tag {
    hmac::sign(key, label)
}

impl MasterKey {
    /// A key from exactly [`MASTER_KEY_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<MasterKey> {
        let raw: [u8; MASTER_KEY_LEN] = bytes.try_into().map_err(|_| {
            StoreError::Key(format!(
                "a master key is {MASTER_KEY_LEN} bytes, this one has {}",
                bytes.len()
            ))
        })?;
        let root = hmac::Key::new(hmac::HMAC_SHA256, &raw);
        let id_tag = derive(&root, b"kami key id v1");
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&id_tag.as_ref()[..KEY_ID_LEN]);
        let aead_key = derive(&root, b"kami seal aes-256-gcm v1");
        let aead = UnboundKey::new(&AES_256_GCM, aead_key.as_ref())
            .map(LessSafeKey::new)
            .map_err(|_| StoreError::Key("cannot set up AES-256-GCM".into()))?;
        let hash_key = derive(&root, b"kami secret hash v1");
        Ok(MasterKey {
            id: KeyId(id),
            aead,
            hash: hmac::Key::new(hmac::HMAC_SHA256, hash_key.as_ref()),
            raw,
        })
    }

    /// A fresh random key.
    pub fn generate() -> Result<MasterKey> {
        let mut raw = [0u8; MASTER_KEY_LEN];
        SystemRandom::new()
            .fill(&mut raw)
            .map_err(|_| StoreError::Key("the system random generator failed".into()))?;
        MasterKey::from_bytes(&raw)
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The key's bytes, to write its file (crate-private: nothing else sees them).
    pub(crate) fn raw(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.raw
    }

    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| StoreError::Key("the system random generator failed".into()))?;
        let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[HEADER_LEN..],
            )
            .map_err(|_| StoreError::Key("sealing failed".into()))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let nonce = Nonce::try_assume_unique_for_key(&sealed[1 + KEY_ID_LEN..HEADER_LEN]).ok()?;
        let mut buf = sealed[HEADER_LEN..].to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .ok()?;
        let n = plain.len();
        buf.truncate(n);
        Some(buf)
    }

    fn hash(&self, place: &[u8], secret: &[u8]) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.hash);
        ctx.update(&(place.len() as u64).to_be_bytes());
        ctx.update(place);
        ctx.update(secret);
        ctx.sign().as_ref().to_vec()
    }
}

/// The keys a process knows: the primary seals, every key opens what it sealed.
pub struct Keyring {
    primary: MasterKey,
    others: Vec<MasterKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("primary", &self.primary.id)
            .field(
                "others",
                &self.others.iter().map(|k| k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Is this stored value in the sealed format (rather than legacy plain text)?
pub fn is_sealed(stored: &[u8]) -> bool {
    stored.first() == Some(&SEALED_V1) && stored.len() >= OVERHEAD
}

/// The id of the key a sealed value names, if it is sealed.
pub fn sealed_key_id(stored: &[u8]) -> Option<KeyId> {
    is_sealed(stored)
        .then(|| KeyId::from_slice(&stored[1..1 + KEY_ID_LEN]))
        .flatten()
}

impl Keyring {
    /// `primary` seals new values; `others` (older or next keys) only open.
    pub fn new(primary: MasterKey, others: Vec<MasterKey>) -> Keyring {
        let others = others.into_iter().filter(|k| k.id != primary.id).collect();
        Keyring { primary, others }
    }

    /// A keyring of one fresh key (tests, tools).
    pub fn generate() -> Result<Keyring> {
        Ok(Keyring::new(MasterKey::generate()?, Vec::new()))
    }

    /// The same keys with `id` as the primary; `None` if the ring lacks it.
    pub fn with_primary(self, id: KeyId) -> Option<Keyring> {
        let mut all: Vec<MasterKey> = std::iter::once(self.primary).chain(self.others).collect();
        let i = all.iter().position(|k| k.id == id)?;
        let primary = all.swap_remove(i);
        Some(Keyring::new(primary, all))
    }

    /// Does the ring hold this key?
    pub fn contains(&self, id: KeyId) -> bool {
        self.get(id).is_some()
    }

    pub fn primary(&self) -> &MasterKey {
        &self.primary
    }

    /// Every key, the primary first.
    pub fn keys(&self) -> impl Iterator<Item = &MasterKey> {
        std::iter::once(&self.primary).chain(self.others.iter())
    }

    pub fn get(&self, id: KeyId) -> Option<&MasterKey> {
        self.keys().find(|k| k.id == id)
    }

    /// Seal `plaintext` under the primary key, bound to `aad` (its place: see [`place`]).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        self.primary.seal(aad, plaintext)
    }

    /// Open a sealed value with whichever key sealed it. A key this ring lacks, a value moved
    /// from another place (`aad`) or tampered bytes are errors, never garbage.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        let id = sealed_key_id(sealed).ok_or_else(|| {
            StoreError::Corrupt("a stored secret is not in the sealed format".into())
        })?;
        let key = self
            .get(id)
            .ok_or_else(|| StoreError::UnknownKey(id.to_string()))?;
        key.open(aad, sealed).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "a secret sealed under key {id} does not open (tampered, or moved from another row)"
            ))
        })
    }

    /// Open a value sealed from a UTF-8 string.
    pub fn open_string(&self, aad: &[u8], sealed: &[u8]) -> Result<String> {
        String::from_utf8(self.open(aad, sealed)?)
            .map_err(|_| StoreError::Corrupt("an opened secret is not UTF-8".into()))
    }

    /// The keyed hash of `secret` at `place` under the primary key (import de-duplication:
    /// equal secrets of one place hash alike, and nobody without the key can test guesses).
    pub fn hash(&self, place: &[u8], secret: &[u8]) -> Vec<u8> {
        self.primary.hash(place, secret)
    }

    /// The keyed hash under every key of the ring (a secret stored under an older key is still
    /// found as a duplicate).
    pub fn hashes(&self, place: &[u8], secret: &[u8]) -> Vec<Vec<u8>> {
        self.keys().map(|k| k.hash(place, secret)).collect()
    }

    /// A value stored with a key's registration that proves, when it opens, that a key file
    /// holds that very key.
    pub fn check_value(key: &MasterKey) -> Result<Vec<u8>> {
        key.seal(CHECK_AAD, CHECK_PLAINTEXT)
    }

    /// Does `check` (from [`Keyring::check_value`]) open under `key` to the expected text?
    pub fn verify_check(key: &MasterKey, check: &[u8]) -> bool {
        sealed_key_id(check) == Some(key.id)
            && key.open(CHECK_AAD, check).as_deref() == Some(CHECK_PLAINTEXT)
    }
}

/// Associated data naming a value's place: `kami/<table>.<column>/<owner id>`.
pub fn place(column: &str, owner: i64) -> Vec<u8> {
    let mut v = Vec::with_capacity(column.len() + 24);
    v.extend_from_slice(b"kami/");
    v.extend_from_slice(column.as_bytes());
    v.push(b'/');
    v.extend_from_slice(owner.to_string().as_bytes());
    v
}

/// The place of a stored payment channel's key material: its channel id
/// (`kami/channels.secrets/<id>`).
pub(crate) fn channel_secrets_place(channel_id: &str) -> Vec<u8> {
    let mut v = b"kami/channels.secrets/".to_vec();
    v.extend_from_slice(channel_id.as_bytes());
    v
}

/// The place of a card key: its product (a key row's id is not known before it is inserted).
/// So keys of one product can be swapped between cards undetected; see ARCHITECTURE.md,
/// "Secrets at rest", for why that is accepted.
pub(crate) fn card_place(product_id: i64) -> Vec<u8> {
    place("cards.secret", product_id)
}

/// The place of a manual order's fulfilment content: its order.
pub(crate) fn fulfilment_place(order_id: i64) -> Vec<u8> {
    place("orders.fulfilment", order_id)
}

/// The place of the buyer's answers to a product's input fields (a JSON object): its order.
pub(crate) fn fields_place(order_id: i64) -> Vec<u8> {
    place("orders.fields", order_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        Keyring::generate().unwrap()
    }

    #[test]
    fn seals_and_opens_with_a_fresh_nonce_each_time() {
        let r = ring();
        let aad = card_place(7);
        let a = r.seal(&aad, b"CARD-KEY-1").unwrap();
        let b = r.seal(&aad, b"CARD-KEY-1").unwrap();
        assert_ne!(a, b, "two seals of one value must differ (random nonce)");
        assert_eq!(a.len(), OVERHEAD + 10);
        assert!(is_sealed(&a));
        assert_eq!(sealed_key_id(&a), Some(r.primary().id()));
        assert!(!a.windows(10).any(|w| w == b"CARD-KEY-1"));
        assert_eq!(r.open(&aad, &a).unwrap(), b"CARD-KEY-1");
        assert_eq!(r.open_string(&aad, &b).unwrap(), "CARD-KEY-1");
    }

    #[test]
    fn a_value_moved_to_another_place_or_tampered_does_not_open() {
        let r = ring();
        let sealed = r.seal(&card_place(1), b"secret").unwrap();
        let moved = r.open(&card_place(2), &sealed).unwrap_err();
        assert!(moved.to_string().contains("does not open"), "{moved}");
        assert!(r.open(&fulfilment_place(1), &sealed).is_err());
        for i in [0, 1, HEADER_LEN - 1, HEADER_LEN, sealed.len() - 1] {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert!(r.open(&card_place(1), &t).is_err(), "flip at {i} opened");
        }
        assert!(r.open(&card_place(1), b"plain text").is_err());
    }

    #[test]
    fn a_keyring_opens_what_any_of_its_keys_sealed_and_names_a_missing_key() {
        let old = ring();
        let sealed_old = old.seal(b"p", b"v-old").unwrap();
        let old_id = old.primary().id();
        let new = MasterKey::generate().unwrap();
        let raw_old = *old.primary().raw();
        let both = Keyring::new(new, vec![MasterKey::from_bytes(&raw_old).unwrap()]);
        assert_eq!(both.open(b"p", &sealed_old).unwrap(), b"v-old");
        let sealed_new = both.seal(b"p", b"v-new").unwrap();
        assert_ne!(sealed_key_id(&sealed_new), Some(old_id));
        match old.open(b"p", &sealed_new) {
            Err(StoreError::UnknownKey(id)) => {
                assert_eq!(Some(id), sealed_key_id(&sealed_new).map(|k| k.to_string()))
            }
            other => panic!("expected UnknownKey, got {other:?}"),
        }
    }

    #[test]
    fn keyed_hashes_depend_on_key_place_and_secret() {
        let (a, b) = (ring(), ring());
        let h = a.hash(b"p1", b"K");
        assert_eq!(h, a.hash(b"p1", b"K"));
        assert_eq!(h.len(), 32);
        assert_ne!(h, a.hash(b"p2", b"K"));
        assert_ne!(h, a.hash(b"p1", b"L"));
        assert_ne!(h, b.hash(b"p1", b"K"));
        // No ambiguity between place and secret boundaries.
        assert_ne!(a.hash(b"p", b"1K"), a.hash(b"p1", b"K"));
    }

    #[test]
    fn key_checks_tell_the_right_key_from_a_wrong_one() {
        let (a, b) = (ring(), ring());
        let check = Keyring::check_value(a.primary()).unwrap();
        assert!(Keyring::verify_check(a.primary(), &check));
        assert!(!Keyring::verify_check(b.primary(), &check));
        assert!(MasterKey::from_bytes(&[0u8; 31]).is_err());
    }

    #[test]
    fn debug_output_shows_ids_never_key_bytes() {
        let raw = [0xABu8; MASTER_KEY_LEN];
        let k = MasterKey::from_bytes(&raw).unwrap();
        let r = Keyring::new(k, Vec::new());
        let dbg = format!("{r:?} {:?}", r.primary());
        assert!(dbg.contains(&r.primary().id().to_string()), "{dbg}");
        assert!(!dbg.to_lowercase().contains("abab"), "{dbg}");
        assert!(!dbg.contains("171"), "{dbg}");
    }
}
