package echo

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// listen serves each connection with handle on a loopback port.
func listen(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback TCP here: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); handle(c) }()
		}
	}()
	return l.Addr().String()
}

func TestOnceEchoes(t *testing.T) {
	addr := listen(t, func(c net.Conn) {
		b := make([]byte, 1)
		if _, err := c.Read(b); err == nil {
			c.Write(b)
		}
		c.Read(b) // until the client's reset
	})
	buf := make([]byte, 4)
	for range 3 {
		if _, err := Once(addr, 5*time.Second, buf); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOnceTellsAResetApart(t *testing.T) {
	reset := listen(t, func(c net.Conn) {
		b := make([]byte, 1)
		c.Read(b)
		c.(*net.TCPConn).SetLinger(0) // close with a reset
	})
	_, err := Once(reset, 5*time.Second, make([]byte, 1))
	if !IsReset(err) || !errors.Is(err, syscall.ECONNRESET) || !strings.Contains(err.Error(), "127.0.0.1:") {
		t.Errorf("reset after the handshake: %v (IsReset %v)", err, IsReset(err))
	}
	wrong := listen(t, func(c net.Conn) {
		b := make([]byte, 1)
		c.Read(b)
		c.Write([]byte("y"))
		c.Read(b)
	})
	if _, err := Once(wrong, 5*time.Second, make([]byte, 1)); err == nil || IsReset(err) || !strings.Contains(err.Error(), `"y"`) {
		t.Errorf("wrong echo: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skip(err)
	}
	closed := l.Addr().String()
	l.Close()
	if _, err := Once(closed, 5*time.Second, make([]byte, 1)); err == nil || IsReset(err) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("refused at connect: %v (IsReset %v)", err, IsReset(err))
	}
}
