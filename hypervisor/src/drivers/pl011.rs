//! PL011 UART driver.
