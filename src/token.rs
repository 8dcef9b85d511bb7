//! Channel ids and tokens from the OS CSPRNG (OpenSSL), and constant-time token checks
//! (both sides are hashed first, so neither content nor length leaks through timing).

use openssl::{memcmp, rand::rand_bytes, sha::sha256};

const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";

fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    // Failing to read the CSPRNG means the process cannot make safe tokens at all.
    rand_bytes(&mut buf).expect("OpenSSL CSPRNG failed");
    buf
}

/// A channel id of `len` lowercase letters and digits.
pub fn random_id(len: usize) -> String {
    // 252 = 7 * 36: rejecting bytes above it keeps every symbol equally likely.
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes(len * 2) {
            if b < 252 && out.len() < len {
                out.push(ID_ALPHABET[(b % 36) as usize] as char);
            }
        }
    }
    out
}

/// A token of `len` hex characters (`len` ≥ 32 gives ≥ 128 bits of entropy).
/// A uniformly random number in `0..=max` (rejection sampling, so no value is favoured).
pub fn random_up_to(max: u64) -> u64 {
    let draw = || u64::from_le_bytes(random_bytes(8).try_into().unwrap_or([0; 8]));
    let Some(range) = max.checked_add(1) else {
        return draw();
    };
    let zone = u64::MAX - (u64::MAX % range);
    loop {
        let n = draw();
        if n < zone {
            return n % range;
        }
    }
}

pub fn random_token(len: usize) -> String {
    random_bytes(len.div_ceil(2))
        .iter()
        .flat_map(|b| [HEX[(b >> 4) as usize], HEX[(b & 15) as usize]])
        .take(len)
        .map(char::from)
        .collect()
}

pub fn hash(token: &str) -> [u8; 32] {
    sha256(token.as_bytes())
}

/// Compares a presented token against a stored hash in constant time.
pub fn matches_hash(presented: &str, stored: &[u8; 32]) -> bool {
    memcmp::eq(&hash(presented), stored)
}

/// Compares two secrets in constant time.
pub fn matches(presented: &str, expected: &str) -> bool {
    matches_hash(presented, &hash(expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_up_to_stays_in_range_and_reaches_both_ends() {
        assert_eq!(random_up_to(0), 0);
        let draws: Vec<u64> = (0..400).map(|_| random_up_to(2)).collect();
        assert!(draws.iter().all(|&n| n <= 2));
        assert!(draws.contains(&0) && draws.contains(&2));
    }

    #[test]
    fn ids_and_tokens_have_the_asked_length_and_alphabet() {
        let id = random_id(8);
        assert_eq!(id.len(), 8);
        assert!(id.bytes().all(|b| ID_ALPHABET.contains(&b)));
        let t = random_token(33);
        assert_eq!(t.len(), 33);
        assert!(t.bytes().all(|b| HEX.contains(&b)));
        assert_ne!(random_token(32), random_token(32));
    }

    #[test]
    fn token_comparison_accepts_only_the_exact_token() {
        let t = random_token(32);
        assert!(matches_hash(&t, &hash(&t)));
        assert!(!matches_hash(&t[..31], &hash(&t)));
        assert!(!matches_hash("", &hash(&t)));
        assert!(matches("secret", "secret"));
        assert!(!matches("secret ", "secret"));
    }
}
