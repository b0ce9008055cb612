# A raw DNS A query (struct-packed, no resolver library) from the guest: dnsq.py SERVER NAME
# prints the A records of the answer, one a line, then the response code as `rcode=N`.
import socket
import struct
import sys

server, name = sys.argv[1], sys.argv[2]
question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
query = struct.pack(">HHHHHH", 0x4C49, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(query, (server, 53))
r = s.recv(4096)
ident, flags, _qd, ancount = struct.unpack(">HHHH", r[:8])
assert ident == 0x4C49, "wrong id"
i = len(query)
for _ in range(ancount):
    if r[i] & 0xC0 == 0xC0:
        i += 2
    else:
        while r[i]:
            i += r[i] + 1
        i += 1
    rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", r[i : i + 10])
    i += 10
    if rtype == 1:
        print(socket.inet_ntoa(r[i : i + 4]))
    i += rdlen
print("rcode=%d" % (flags & 0xF))
