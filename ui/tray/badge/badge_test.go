package badge

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"testing"

	"github.com/tollgate-fw/tollgate/assets"
)

var (
	circle = Circle{assets.PendingBadge.CenterX, assets.PendingBadge.CenterY, assets.PendingBadge.InnerRadius}
	ink    = color.RGBA{0x1c, 0x19, 0x17, 0xff}
)

func TestText(t *testing.T) {
	for n, want := range map[int]string{-1: "", 0: "", 1: "1", 5: "5", 9: "9", 10: "9+", 1000: "9+"} {
		if got := Text(n); got != want {
			t.Errorf("Text(%d) = %q, want %q", n, got, want)
		}
	}
}

func decode(t *testing.T, b []byte) image.Image {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if r := img.Bounds(); r.Dx() != assets.StatusIconSize || r.Dy() != assets.StatusIconSize {
		t.Fatalf("size %v", r)
	}
	return img
}

// TestCountsOnThePendingIcon: every count has its own icon, which decodes,
// differs from the base only inside the badge, and is made once.
func TestCountsOnThePendingIcon(t *testing.T) {
	base := assets.StatusIcon(assets.StatusPending)
	baseImg := decode(t, base)
	icons := NewIcons(base, circle, ink)
	seen := map[string]string{} // PNG -> text
	for _, n := range []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10} {
		b, text, err := icons.For(n)
		if err != nil {
			t.Fatalf("For(%d): %v", n, err)
		}
		if other, ok := seen[string(b)]; ok {
			t.Errorf("%q and %q have the same icon", text, other)
		}
		seen[string(b)] = text
		img := decode(t, b)
		changed := 0
		for y := 0; y < assets.StatusIconSize; y++ {
			for x := 0; x < assets.StatusIconSize; x++ {
				if !colorsEqual(img.At(x, y), baseImg.At(x, y)) {
					changed++
					dx, dy := float64(x)+0.5-circle.CenterX, float64(y)+0.5-circle.CenterY
					if math.Hypot(dx, dy) > circle.Radius+1 {
						t.Errorf("%q: pixel (%d,%d) changed outside the badge", text, x, y)
					}
					if !colorsEqual(img.At(x, y), ink) {
						t.Errorf("%q: pixel (%d,%d) is %v, not the ink", text, x, y, img.At(x, y))
					}
				}
			}
		}
		if changed < 20 {
			t.Errorf("%q: %d pixels written", text, changed)
		}
	}
	// Made once per text: 10 and 99 are both "9+", the same bytes.
	a, _, _ := icons.For(10)
	b, text, _ := icons.For(99)
	if &a[0] != &b[0] || text != "9+" {
		t.Errorf("9+ made twice (or %q)", text)
	}
	if none, text, err := icons.For(0); err != nil || text != "" || !bytes.Equal(none, base) {
		t.Errorf("For(0): %q %v, base icon %v", text, err, bytes.Equal(none, base))
	}
}

func colorsEqual(a, b color.Color) bool {
	r1, g1, b1, a1 := a.RGBA()
	r2, g2, b2, a2 := b.RGBA()
	return r1 == r2 && g1 == g2 && b1 == b2 && a1 == a2
}

func TestDrawRefuses(t *testing.T) {
	base := assets.StatusIcon(assets.StatusPending)
	if _, err := Draw(base, circle, "x", ink); err == nil {
		t.Error("no error for a character without a glyph")
	}
	if _, err := Draw(base, Circle{10, 10, 4}, "9+", ink); err == nil {
		t.Error("no error for text larger than the circle")
	}
	if _, err := Draw([]byte("not a png"), circle, "1", ink); err == nil {
		t.Error("no error for bytes that are not a PNG")
	}
}

func BenchmarkDraw(b *testing.B) {
	base := assets.StatusIcon(assets.StatusPending)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Draw(base, circle, "9+", ink); err != nil {
			b.Fatal(err)
		}
	}
}
