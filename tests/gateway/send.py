#!/usr/bin/env python3
"""Send messages over SMTP for the gateway tests.

send.py PORT FROM TO FILE          one message; exit 0 if accepted, 4 on a 4xx, 5 on a 5xx
send.py --load PORT FROM TO N PAR [TEMPLATE]
                                   N messages, PAR connections at a time: small plain ones, or
                                   TEMPLATE with "TEMPLATE" in its outer Subject/Message-ID
                                   replaced by the number; prints the accepted Message-IDs
"""
import smtplib
import sys
import threading


def send(port, sender, rcpt, data):
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
        s.sendmail(sender, [rcpt], data)


def one(argv):
    port, sender, rcpt, path = int(argv[0]), argv[1], argv[2], argv[3]
    with open(path, "rb") as f:
        data = f.read()
    try:
        send(port, sender, rcpt, data)
    except smtplib.SMTPDataError as e:
        print(f"{e.smtp_code} {e.smtp_error.decode(errors='replace')}", file=sys.stderr)
        return 4 if 400 <= e.smtp_code < 500 else 5
    except smtplib.SMTPResponseException as e:
        print(f"{e.smtp_code} {e.smtp_error.decode(errors='replace')}", file=sys.stderr)
        return 4 if 400 <= e.smtp_code < 500 else 5
    return 0


def load(argv):
    port, sender, rcpt, n, par = int(argv[0]), argv[1], argv[2], int(argv[3]), int(argv[4])
    template = open(argv[5], "rb").read() if len(argv) > 5 else None
    ids, lock, errors = [], threading.Lock(), []
    sem = threading.Semaphore(par)

    def worker(i):
        mid = f"<load-{i}@gw.test>"
        if template is not None:
            data = template.replace(b"TEMPLATE", str(i).encode())
        else:
            data = (f"From: {sender}\r\nTo: {rcpt}\r\nSubject: load {i}\r\n"
                    f"Message-ID: {mid}\r\n\r\nload message {i}\r\n").encode()
        try:
            send(port, sender, rcpt, data)
            with lock:
                ids.append(mid)
        except Exception as e:  # report, never hide a lost message
            with lock:
                errors.append(f"{mid}: {e}")
        finally:
            sem.release()

    threads = []
    for i in range(n):
        sem.acquire()
        t = threading.Thread(target=worker, args=(i,))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    for mid in ids:
        print(mid)
    for e in errors:
        print(e, file=sys.stderr)
    return 0 if not errors else 1


if __name__ == "__main__":
    if sys.argv[1] == "--load":
        sys.exit(load(sys.argv[2:]))
    sys.exit(one(sys.argv[1:]))
