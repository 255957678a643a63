//! A number kept as its decimal digits and advanced by a fixed step, digit by digit.
//!
//! The generator writes one or two numbers per record as text. Formatting a `u64` divides it by
//! powers of ten, and in a wasm guest every such division is a real 64-bit division instruction
//! (wasm has no 64-bit multiply-high, so the compiler cannot turn a division by a constant into a
//! multiplication as it does natively). The generator's numbers only ever grow by a fixed step,
//! so adding the step to the digits in place costs a few byte operations per record instead.

/// Room for every `u64` (20 digits) and the carry out of one more step.
const WIDTH: usize = 24;

/// `value` in decimal, advanced by `step` with [`Decimal::advance`].
///
/// ```
/// use wasmflow_op_generator::decimal::Decimal;
/// let mut d = Decimal::new(98, 3);
/// assert_eq!(d.digits(), b"98");
/// d.advance();
/// assert_eq!(d.digits(), b"101");
/// ```
#[derive(Clone, Debug)]
pub struct Decimal {
    /// ASCII digits, right-aligned: the number is `digits[start..]`.
    digits: [u8; WIDTH],
    start: usize,
    /// The step's digits as values 0–9, right-aligned, and where they start.
    step: [u8; WIDTH],
    step_start: usize,
}

impl Decimal {
    /// `value`, to be advanced by `step` at a time.
    pub fn new(value: u64, step: u64) -> Decimal {
        let (mut digits, start) = Self::spread(value);
        for d in &mut digits[start..] {
            *d += b'0';
        }
        let (step, step_start) = Self::spread(step);
        Decimal { digits, start, step, step_start }
    }

    /// `value`'s decimal digits as values 0–9, right-aligned, and the index of the first.
    fn spread(mut value: u64) -> ([u8; WIDTH], usize) {
        let mut digits = [0u8; WIDTH];
        let mut start = WIDTH;
        loop {
            start -= 1;
            digits[start] = (value % 10) as u8;
            value /= 10;
            if value == 0 {
                return (digits, start);
            }
        }
    }

    /// The number's digits, without leading zeros (`0` is `b"0"`).
    #[inline]
    pub fn digits(&self) -> &[u8] {
        &self.digits[self.start..]
    }

    /// Adds the step: digit by digit from the right, stopping once the step's digits and the
    /// carry are used up (for a step below ten, usually after one digit).
    #[inline]
    pub fn advance(&mut self) {
        // Nine times in ten for a step below ten: only the last digit changes.
        if self.step_start == WIDTH - 1 {
            let last = self.digits[WIDTH - 1] + self.step[WIDTH - 1];
            if last <= b'9' {
                self.digits[WIDTH - 1] = last;
                return;
            }
        }
        self.carry_through();
    }

    /// [`advance`](Decimal::advance) in general.
    #[inline(never)]
    fn carry_through(&mut self) {
        let mut carry = 0u8;
        let mut i = WIDTH;
        while i > 0 {
            i -= 1;
            let add = self.step[i] + carry;
            if add == 0 && i < self.step_start {
                break;
            }
            // Digits left of the number are zero bytes, not ASCII '0'.
            let digit = self.digits[i].saturating_sub(b'0') + add;
            carry = u8::from(digit >= 10);
            self.digits[i] = b'0' + digit - 10 * carry;
            self.start = self.start.min(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_formatting_across_carries_and_steps() {
        for (start, step) in [(0u64, 1u64), (7, 3), (95, 5), (999, 1), (1, 997), (12_345, 10_000), (u64::MAX - 100, 7)] {
            let mut d = Decimal::new(start, step);
            let mut n = start;
            for _ in 0..20 {
                assert_eq!(d.digits(), n.to_string().as_bytes(), "start {start}, step {step}");
                if n.checked_add(step).is_none() {
                    break;
                }
                n += step;
                d.advance();
            }
        }
    }

    #[test]
    fn zero_and_a_zero_step() {
        let mut d = Decimal::new(0, 0);
        d.advance();
        assert_eq!(d.digits(), b"0");
    }
}
