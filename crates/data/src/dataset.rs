//! The random-access [`Dataset`] trait, its [`Subset`] adapter and the [`Split`] enum.
//!
//! Datasets are small: a length and indexed access. Batching and shuffling live in
//! [`crate::batch`] as iterators over indices, so any dataset can be batched the same way.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// Which official split of a dataset to read.
///
/// An enum rather than a string so that a typo fails to compile. Parse one from the
/// command line with [`FromStr`] (`"train"`, `"test"`).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training split.
    Train,
    /// The held-out test split.
    Test,
}

impl Split {
    /// Every split, in a fixed order.
    pub const ALL: [Split; 2] = [Split::Train, Split::Test];

    /// The lowercase name, as accepted by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Split {
    type Err = Error;

    /// Parses `"train"` or `"test"` (case-insensitive).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownSplit`] for any other name.
    ///
    /// ```
    /// use bigbatch_data::Split;
    /// assert_eq!("Train".parse::<Split>()?, Split::Train);
    /// assert!("valid".parse::<Split>().is_err());
    /// # Ok::<(), bigbatch_data::Error>(())
    /// ```
    fn from_str(name: &str) -> Result<Self, Error> {
        Split::ALL
            .into_iter()
            .find(|split| split.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::UnknownSplit {
                name: name.to_owned(),
            })
    }
}

/// A finite collection of examples with random access by index.
///
/// `Item` borrows from the dataset, so in-memory datasets hand out views without copying.
///
/// ```
/// use bigbatch_data::{Dataset, ImageClassification, ImageShape};
///
/// let data = ImageClassification::new(ImageShape::new(1, 1, 2), vec![1, 2, 3, 4], vec![0, 1], 2)?;
/// let sample = Dataset::get(&data, 1).expect("index 1 exists");
/// assert_eq!((sample.image, sample.label), (&[3, 4][..], 1));
/// assert!(Dataset::get(&data, 2).is_none());
/// # Ok::<(), bigbatch_data::Error>(())
/// ```
pub trait Dataset {
    /// One example.
    type Item<'a>
    where
        Self: 'a;

    /// Number of examples.
    fn len(&self) -> usize;

    /// Whether the dataset has no examples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The example at `index`, or `None` when `index >= self.len()`.
    fn get(&self, index: usize) -> Option<Self::Item<'_>>;

    /// Iterates over the examples in index order.
    fn iter(&self) -> Iter<'_, Self>
    where
        Self: Sized,
    {
        Iter {
            dataset: self,
            next: 0,
        }
    }
}

/// Iterator over a dataset's examples in index order, from [`Dataset::iter`].
#[derive(Debug)]
pub struct Iter<'a, D> {
    dataset: &'a D,
    next: usize,
}

impl<'a, D: Dataset> Iterator for Iter<'a, D> {
    type Item = D::Item<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.dataset.get(self.next)?;
        self.next += 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.dataset.len().saturating_sub(self.next);
        (left, Some(left))
    }
}

/// A view of some of a dataset's examples, in the order given by `indices`.
///
/// Indices may repeat. Use it to look at a split without copying; to copy, use the
/// concrete dataset's own `subset`, e.g. [`crate::ImageClassification::subset`].
///
/// ```
/// use bigbatch_data::{Dataset, ImageClassification, ImageShape, Subset};
///
/// let data = ImageClassification::new(ImageShape::new(1, 1, 1), vec![10, 20, 30], vec![0, 1, 0], 2)?;
/// let view = Subset::new(&data, vec![2, 0]).expect("indices are in range");
/// let pixels: Vec<u8> = view.iter().map(|sample| sample.image[0]).collect();
/// assert_eq!(pixels, [30, 10]);
/// # Ok::<(), bigbatch_data::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Subset<'a, D> {
    dataset: &'a D,
    indices: Vec<usize>,
}

impl<'a, D: Dataset> Subset<'a, D> {
    /// A view of `dataset` at `indices`, or `None` if an index is out of range.
    pub fn new(dataset: &'a D, indices: Vec<usize>) -> Option<Self> {
        let len = dataset.len();
        indices
            .iter()
            .all(|&index| index < len)
            .then_some(Subset { dataset, indices })
    }

    /// The indices into the underlying dataset.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }
}

impl<D: Dataset> Dataset for Subset<'_, D> {
    type Item<'b>
        = D::Item<'b>
    where
        Self: 'b;

    fn len(&self) -> usize {
        self.indices.len()
    }

    fn get(&self, index: usize) -> Option<Self::Item<'_>> {
        self.dataset.get(*self.indices.get(index)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The squares `0, 1, 4, …` of the first `n` integers.
    struct Squares(usize);

    impl Dataset for Squares {
        type Item<'a> = usize;

        fn len(&self) -> usize {
            self.0
        }

        fn get(&self, index: usize) -> Option<usize> {
            (index < self.0).then_some(index * index)
        }
    }

    #[test]
    fn iter_visits_every_item_in_order() {
        let items: Vec<usize> = Squares(4).iter().collect();
        assert_eq!(items, [0, 1, 4, 9]);
        assert_eq!(Squares(4).iter().size_hint(), (4, Some(4)));
        assert!(Squares(0).is_empty());
    }

    #[test]
    fn subset_maps_indices_and_rejects_out_of_range() {
        let squares = Squares(5);
        let view = Subset::new(&squares, vec![4, 1, 1]).expect("in range");
        assert_eq!(view.len(), 3);
        assert_eq!(view.iter().collect::<Vec<_>>(), [16, 1, 1]);
        assert_eq!(view.get(3), None);
        assert!(Subset::new(&squares, vec![0, 5]).is_none());
    }

    #[test]
    fn split_round_trips_through_its_name() {
        for split in Split::ALL {
            assert_eq!(split.to_string().parse::<Split>().ok(), Some(split));
        }
        let error = "validation".parse::<Split>();
        assert!(matches!(error, Err(Error::UnknownSplit { ref name }) if name == "validation"));
    }
}
