//! Reference codes: short random ids shown to a person next to an error and written in the
//! log line for that error, so support can find one from the other.

/// A new reference such as `ref-8F3K2QZ1`.
pub fn new() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    let mut rng = rand::rng();
    let mut out = String::from("ref-");
    for _ in 0..8 {
        out.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    out
}
