"""What the tests share: real servers started on 127.0.0.1, files written for a test, the browser."""
