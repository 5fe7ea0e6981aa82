//! Allocation that fails with an error instead of aborting, for every buffer whose size comes from input.
//!
//! A blob's shape, an H's number of classes, an HDF5 dataset's declared extent: all come from files a user (or
//! an attacker) hands crema. A `vec![0.0; n]` with such an `n` aborts the process when the memory is not there.
//! The functions here reserve first (`try_reserve_exact`) and return an [`AllocError`], which names what the
//! buffer was for and its size in bytes.

/// A buffer whose size came from input (a shape, a count of classes, a declared extent) that the memory cannot
/// hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what}: cannot allocate {}: not enough memory (check the sizes in the file, or free memory)",
    describe_bytes(*bytes)
)]
pub struct AllocError {
    /// What the buffer was for (`a blob of shape [1000000000]`).
    pub what: String,
    /// The size asked for.
    pub bytes: u128,
}

type Result<T> = std::result::Result<T, AllocError>;

/// `count` copies of `value`, or an error naming `what` when the memory cannot be had.
pub fn filled<T: Clone>(count: usize, value: T, what: impl FnOnce() -> String) -> Result<Vec<T>> {
    let mut values = Vec::new();
    resize(&mut values, count, value, what)?;
    Ok(values)
}

/// `count` default values (zeros), or an error naming `what`.
pub fn zeroed<T: Clone + Default>(count: usize, what: impl FnOnce() -> String) -> Result<Vec<T>> {
    filled(count, T::default(), what)
}

/// Resizes `values` to `count`, new elements `value`, or an error naming `what` (and `values` unchanged).
pub fn resize<T: Clone>(
    values: &mut Vec<T>,
    count: usize,
    value: T,
    what: impl FnOnce() -> String,
) -> Result<()> {
    if count > values.len() {
        values
            .try_reserve_exact(count - values.len())
            .map_err(|_| out_of_memory(what(), count, std::mem::size_of::<T>()))?;
    }
    values.resize(count, value);
    Ok(())
}

/// Reserves room for `additional` more elements, or an error naming `what`.
pub fn reserve<T>(
    values: &mut Vec<T>,
    additional: usize,
    what: impl FnOnce() -> String,
) -> Result<()> {
    values.try_reserve(additional).map_err(|_| {
        out_of_memory(
            what(),
            values.len().saturating_add(additional),
            std::mem::size_of::<T>(),
        )
    })
}

/// The `count` items of `items` in a vector reserved up front, or an error naming `what`.
pub fn collect<T>(
    items: impl Iterator<Item = T>,
    count: usize,
    what: impl FnOnce() -> String,
) -> Result<Vec<T>> {
    let mut values = Vec::new();
    reserve(&mut values, count, what)?;
    values.extend(items);
    Ok(values)
}

fn out_of_memory(what: String, count: usize, item: usize) -> AllocError {
    AllocError {
        what,
        bytes: (count as u128) * (item as u128),
    }
}

/// A byte count as people read it: `6.0 GiB (6400000000 bytes)`.
pub fn describe_bytes(bytes: u128) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {} ({bytes} bytes)", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_past_memory_are_errors_naming_the_buffer() {
        let err = filled(usize::MAX / 4, 0.0f32, || "blob of shape [huge]".into()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("blob of shape [huge]: cannot allocate "),
            "{text}"
        );
        assert!(
            text.contains(&format!("({} bytes)", (usize::MAX / 4) as u128 * 4)),
            "{text}"
        );
    }

    #[test]
    fn resizing_keeps_and_pads() {
        let mut v = vec![1u8, 2];
        resize(&mut v, 4, 9, || unreachable!()).unwrap();
        assert_eq!(v, [1, 2, 9, 9]);
        resize(&mut v, 1, 0, || unreachable!()).unwrap();
        assert_eq!(v, [1]);
        assert_eq!(zeroed::<u32>(3, || unreachable!()).unwrap(), [0, 0, 0]);
    }

    #[test]
    fn bytes_read_as_people_read_them() {
        assert_eq!(describe_bytes(12), "12 bytes");
        assert_eq!(describe_bytes(6_400_000_000), "6.0 GiB (6400000000 bytes)");
    }
}
