//! The one rule for names that cross the wire (rooms, participants,
//! display names, sources): not empty, bounded, no control characters. The
//! coordinator checks what browsers send, the node what coordinators send.

/// Longest room or participant id, in bytes.
pub const MAX_ID: usize = 128;
/// Longest display name, in bytes.
pub const MAX_DISPLAY_NAME: usize = 64;
/// Longest producer source ("mic", "camera", ...), in bytes.
pub const MAX_SOURCE: usize = 32;

/// The rule, for error messages.
pub const RULE: &str = "1 to 128 printable characters";

/// Whether `s` is 1 to `max` bytes without control characters.
pub fn valid(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_and_printable() {
        assert!(valid("room-1 ünïcode", MAX_ID));
        assert!(!valid("", MAX_ID));
        assert!(!valid("a\nb", MAX_ID));
        assert!(!valid(&"x".repeat(MAX_ID + 1), MAX_ID));
        assert!(valid(&"x".repeat(MAX_ID), MAX_ID));
    }
}
