//! Multipart upload planning: part size, part count, part numbers. Pure; S3's limits are
//! checked here so a request that S3 would refuse is refused before S3 is called.

/// S3's smallest part (all parts but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// S3's most parts per upload.
pub const MAX_PARTS: u32 = 10_000;
pub use crate::policy::MAX_OBJECT_SIZE;
/// The part size chosen when the caller names none (grown to fit `MAX_PARTS`).
pub const DEFAULT_PART_SIZE: u64 = 8 * 1024 * 1024;
/// Part URLs one request may ask for.
pub const MAX_PART_URLS_PER_REQUEST: usize = 1_000;

const MIB: u64 = 1024 * 1024;

/// How an upload of `content_length` bytes is cut: `part_count` parts of `part_size` bytes,
/// the last one holding the remainder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub content_length: u64,
    pub part_size: u64,
    pub part_count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("content_length must be at least 1")]
    Empty,
    #[error("content_length exceeds the largest allowed upload of {max} bytes")]
    TooLarge { max: u64 },
    #[error("part_size must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes")]
    PartSizeOutOfRange,
    #[error(
        "part_size {part_size} cuts content_length into more than {MAX_PARTS} parts; use at least {min} bytes"
    )]
    TooManyParts { part_size: u64, min: u64 },
    #[error("part_numbers must hold 1 to {MAX_PART_URLS_PER_REQUEST} distinct numbers")]
    PartNumberCount,
    #[error("part number {0} is not a part of this upload (1 to {1})")]
    PartNumberOutOfRange(u64, u32),
    #[error("part number {0} is listed twice")]
    DuplicatePart(u32),
    #[error("parts must list every part 1 to {0} once, in ascending order")]
    IncompleteParts(u32),
}

/// Plans an upload of `content_length` bytes (at most `max_length`, the access point's limit
/// or S3's) with the requested part size or a default that keeps within `MAX_PARTS`.
pub fn plan(
    content_length: u64,
    requested_part_size: Option<u64>,
    max_length: Option<u64>,
) -> Result<Plan, PlanError> {
    if content_length == 0 {
        return Err(PlanError::Empty);
    }
    let max = max_length.map_or(MAX_OBJECT_SIZE, |m| m.min(MAX_OBJECT_SIZE));
    if content_length > max {
        return Err(PlanError::TooLarge { max });
    }
    // The smallest part size that fits the parts limit, in whole MiB.
    let min_fitting = content_length.div_ceil(u64::from(MAX_PARTS)).div_ceil(MIB) * MIB;
    let part_size = match requested_part_size {
        Some(size) => {
            if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&size) {
                return Err(PlanError::PartSizeOutOfRange);
            }
            size
        }
        None => DEFAULT_PART_SIZE.max(min_fitting),
    };
    let count = content_length.div_ceil(part_size);
    let part_count = u32::try_from(count)
        .ok()
        .filter(|c| *c <= MAX_PARTS)
        .ok_or(PlanError::TooManyParts {
            part_size,
            min: min_fitting.max(MIN_PART_SIZE),
        })?;
    Ok(Plan {
        content_length,
        part_size,
        part_count,
    })
}

impl Plan {
    /// The exact length of part `n` (1-based), or `None` if the upload has no such part.
    pub fn part_length(&self, n: u32) -> Option<u64> {
        if n == 0 || n > self.part_count {
            return None;
        }
        let before = u64::from(n - 1) * self.part_size;
        Some((self.content_length - before).min(self.part_size))
    }

    /// The first `count` part numbers (for the URLs handed out at creation).
    pub fn first_parts(&self, count: usize) -> Vec<u32> {
        let count = u32::try_from(count)
            .unwrap_or(u32::MAX)
            .min(self.part_count);
        (1..=count).collect()
    }

    /// Part numbers a caller asks URLs for: 1 to `MAX_PART_URLS_PER_REQUEST` distinct parts
    /// of this upload. Returns them as `u32`s in the order given.
    pub fn check_part_numbers(&self, numbers: &[u64]) -> Result<Vec<u32>, PlanError> {
        if numbers.is_empty() || numbers.len() > MAX_PART_URLS_PER_REQUEST {
            return Err(PlanError::PartNumberCount);
        }
        let mut seen = std::collections::BTreeSet::new();
        numbers
            .iter()
            .map(|&n| {
                let part = u32::try_from(n)
                    .ok()
                    .filter(|p| self.part_length(*p).is_some())
                    .ok_or(PlanError::PartNumberOutOfRange(n, self.part_count))?;
                if !seen.insert(part) {
                    return Err(PlanError::DuplicatePart(part));
                }
                Ok(part)
            })
            .collect()
    }

    /// A completion must list every part, 1 to `part_count`, ascending: each part URL signed
    /// its exact length, so the object is then exactly the declared size.
    pub fn check_completion(&self, numbers: &[u64]) -> Result<(), PlanError> {
        let complete = numbers.len() == self.part_count as usize
            && numbers.iter().enumerate().all(|(i, &n)| n == i as u64 + 1);
        if complete {
            Ok(())
        } else {
            Err(PlanError::IncompleteParts(self.part_count))
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn eleven_mib_in_five_mib_parts() {
        let p = plan(11 * MIB, Some(5 * MIB), None).expect("plan");
        assert_eq!(p.part_count, 3);
        assert_eq!(p.part_length(1), Some(5 * MIB));
        assert_eq!(p.part_length(3), Some(MIB));
        assert_eq!(p.part_length(4), None);
        assert_eq!(p.part_length(0), None);
    }

    #[test]
    fn limits_are_refused() {
        assert_eq!(plan(0, None, None), Err(PlanError::Empty));
        assert_eq!(
            plan(11, None, Some(10)),
            Err(PlanError::TooLarge { max: 10 })
        );
        assert_eq!(
            plan(MAX_OBJECT_SIZE + 1, None, None),
            Err(PlanError::TooLarge {
                max: MAX_OBJECT_SIZE
            })
        );
        assert_eq!(
            plan(10, Some(MIN_PART_SIZE - 1), None),
            Err(PlanError::PartSizeOutOfRange)
        );
        assert_eq!(
            plan(10, Some(MAX_PART_SIZE + 1), None),
            Err(PlanError::PartSizeOutOfRange)
        );
        assert!(matches!(
            plan(MAX_OBJECT_SIZE, Some(MIN_PART_SIZE), None),
            Err(PlanError::TooManyParts { .. })
        ));
        // The largest object fits with the default part size.
        let p = plan(MAX_OBJECT_SIZE, None, None).expect("5 TiB plans");
        assert!(p.part_count <= MAX_PARTS && p.part_size <= MAX_PART_SIZE);
    }

    #[test]
    fn part_numbers_and_completion() {
        let p = plan(11 * MIB, Some(5 * MIB), None).expect("plan");
        assert_eq!(p.check_part_numbers(&[3, 1]), Ok(vec![3, 1]));
        assert_eq!(p.check_part_numbers(&[]), Err(PlanError::PartNumberCount));
        assert_eq!(
            p.check_part_numbers(&[0]),
            Err(PlanError::PartNumberOutOfRange(0, 3))
        );
        assert_eq!(
            p.check_part_numbers(&[4]),
            Err(PlanError::PartNumberOutOfRange(4, 3))
        );
        assert_eq!(
            p.check_part_numbers(&[u64::from(u32::MAX) + 2]),
            Err(PlanError::PartNumberOutOfRange(u64::from(u32::MAX) + 2, 3))
        );
        assert_eq!(
            p.check_part_numbers(&[2, 2]),
            Err(PlanError::DuplicatePart(2))
        );
        assert_eq!(p.check_completion(&[1, 2, 3]), Ok(()));
        for bad in [&[1, 2][..], &[1, 3, 2], &[1, 2, 3, 4], &[2, 3, 4], &[]] {
            assert_eq!(p.check_completion(bad), Err(PlanError::IncompleteParts(3)));
        }
        assert_eq!(p.first_parts(2), vec![1, 2]);
        assert_eq!(p.first_parts(100), vec![1, 2, 3]);
    }

    proptest! {
        /// Any accepted plan is one S3 accepts: parts within 5 MiB–5 GiB (the last may be
        /// smaller), at most 10 000 parts, and the parts add up to the declared length.
        #[test]
        fn plans_respect_s3_limits(
            len in 1u64..=MAX_OBJECT_SIZE,
            size in prop::option::of(1u64..=2 * MAX_PART_SIZE),
            max in prop::option::of(1u64..=MAX_OBJECT_SIZE),
        ) {
            match plan(len, size, max) {
                Ok(p) => {
                    prop_assert!(max.is_none_or(|m| len <= m));
                    prop_assert!((1..=MAX_PARTS).contains(&p.part_count));
                    prop_assert!((MIN_PART_SIZE..=MAX_PART_SIZE).contains(&p.part_size));
                    if let Some(s) = size { prop_assert_eq!(p.part_size, s); }
                    let mut total = 0u64;
                    for n in 1..=p.part_count {
                        let l = p.part_length(n).expect("every part has a length");
                        prop_assert!(l >= 1 && l <= p.part_size);
                        if n < p.part_count { prop_assert_eq!(l, p.part_size); }
                        total += l;
                    }
                    prop_assert_eq!(total, len);
                    prop_assert_eq!(p.part_length(p.part_count + 1), None);
                }
                Err(PlanError::TooLarge { max: m }) => prop_assert!(len > m),
                Err(PlanError::PartSizeOutOfRange) => {
                    let s = size.expect("only a requested size is out of range");
                    prop_assert!(!(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&s));
                }
                Err(PlanError::TooManyParts { part_size, min }) => {
                    prop_assert!(size.is_some(), "the default size always fits");
                    prop_assert!(len.div_ceil(part_size) > u64::from(MAX_PARTS));
                    // The suggested minimum does fit.
                    prop_assert!(len.div_ceil(min) <= u64::from(MAX_PARTS));
                }
                Err(e) => prop_assert!(false, "unexpected {e:?}"),
            }
        }

        /// Part numbers are accepted exactly when each is a part of the upload and none repeats.
        #[test]
        fn part_numbers_are_parts_of_the_upload(
            len in 1u64..=200 * MIB,
            numbers in prop::collection::vec(0u64..60, 0..20),
        ) {
            let p = plan(len, Some(MIN_PART_SIZE), None).expect("plan");
            let distinct = numbers.iter().collect::<std::collections::BTreeSet<_>>().len()
                == numbers.len();
            let in_range = numbers.iter().all(|&n| n >= 1 && n <= u64::from(p.part_count));
            let ok = !numbers.is_empty() && distinct && in_range;
            prop_assert_eq!(p.check_part_numbers(&numbers).is_ok(), ok);
        }
    }
}
