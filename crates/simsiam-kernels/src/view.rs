//! Strided matrix views over slices, shared by the matrix products and the convolutions.
//! Fields are open to the kernels, which build views their own bounds arithmetic covers;
//! [`MatRef::new`] checks the bounds for everyone else.

/// A read-only `rows x cols` matrix view: element (i, j) at `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a, T> {
    pub(crate) data: &'a [T],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A view; panics if it reaches past `data`.
    pub(crate) fn new(data: &'a [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        assert!(
            rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < data.len(),
            "matrix view out of bounds"
        );
        Self { data, rows, cols, rs, cs }
    }

    /// A contiguous row-major view.
    pub(crate) fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transpose, without copying.
    pub(crate) fn t(self) -> Self {
        Self { rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs, ..self }
    }

    /// The same shape and strides over other elements (the same slice seen as another type).
    pub(crate) fn with_data<U>(self, data: &'a [U]) -> MatRef<'a, U> {
        MatRef { data, rows: self.rows, cols: self.cols, rs: self.rs, cs: self.cs }
    }
}

impl<T: Copy> MatRef<'_, T> {
    /// Element `(i, j)`.
    pub(crate) fn at(&self, i: usize, j: usize) -> T {
        self.data[i * self.rs + j * self.cs]
    }
}

/// A mutable `rows x cols` row-major matrix view with row stride `rs`.
pub(crate) struct MatMut<'a, T> {
    pub(crate) data: &'a mut [T],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) rs: usize,
}

impl<'a, T> MatMut<'a, T> {
    /// A contiguous row-major view; panics if `data` is too short.
    pub(crate) fn row_major(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "matrix view out of bounds");
        Self { data, rows, cols, rs: cols }
    }
}
