//! Outbound SMTP: the relay client and DSN generation. (Placeholder.)
