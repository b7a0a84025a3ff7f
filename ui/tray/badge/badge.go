// Package badge writes the number of prompts waiting onto the badge of the
// tray's pending icon (assets.StatusIcon(assets.StatusPending)): "1" to
// "9", "9+" beyond, in a tiny bitmap font drawn with image/draw, and keeps
// the PNGs made (one per text: ten at most).
//
// It is plain Go: it must not import a UI toolkit or talk to the daemon;
// the tray turns its bytes into the icon.
package badge

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"strconv"
	"sync"
)

// Text is what the badge says for n waiting: "" for none, "1"…"9", "9+".
func Text(n int) string {
	switch {
	case n <= 0:
		return ""
	case n > 9:
		return "9+"
	}
	return strconv.Itoa(n)
}

// glyphs are 3×5 bitmaps, one string of five rows per character, '#' on.
var glyphs = map[rune][5]string{
	'0': {"###", "#.#", "#.#", "#.#", "###"},
	'1': {".#.", "##.", ".#.", ".#.", "###"},
	'2': {"###", "..#", "###", "#..", "###"},
	'3': {"###", "..#", ".##", "..#", "###"},
	'4': {"#.#", "#.#", "###", "..#", "..#"},
	'5': {"###", "#..", "###", "..#", "###"},
	'6': {"###", "#..", "###", "#.#", "###"},
	'7': {"###", "..#", ".#.", ".#.", ".#."},
	'8': {"###", "#.#", "###", "#.#", "###"},
	'9': {"###", "#.#", "###", "..#", "###"},
	'+': {"...", ".#.", "###", ".#.", "..."},
}

// Circle is the badge: its centre and the radius the text must stay in.
type Circle struct {
	CenterX, CenterY, Radius float64
}

// Draw returns the PNG icon with text written in the circle, centred, in
// colour ink: one character scaled to fill the circle, two smaller. Text
// "" returns icon unchanged. It fails on an icon that does not decode, a
// character it has no glyph for, or text that does not fit.
func Draw(icon []byte, c Circle, text string, ink color.Color) ([]byte, error) {
	if text == "" {
		return icon, nil
	}
	src, err := png.Decode(bytes.NewReader(icon))
	if err != nil {
		return nil, fmt.Errorf("badge: decode icon: %w", err)
	}
	rs := []rune(text)
	scale := 3 // one character: 9×15 pixels
	if len(rs) > 1 {
		scale = 2 // two: 6×10 each, a pixel column apart
	}
	gap := scale / 2
	w := len(rs)*3*scale + (len(rs)-1)*gap
	h := 5 * scale
	// The text's box must lie inside the circle: its corners within the
	// radius.
	if hw, hh := float64(w)/2, float64(h)/2; hw*hw+hh*hh > c.Radius*c.Radius {
		return nil, fmt.Errorf("badge: %q (%d×%d px) does not fit a circle of radius %.1f", text, w, h, c.Radius)
	}
	// Drawn on the decoded icon itself (ours) when it is NRGBA, as PNGs
	// with alpha decode: a copy through premultiplied colour would shift
	// the half-transparent edge pixels.
	img, ok := src.(*image.NRGBA)
	if !ok {
		img = image.NewNRGBA(src.Bounds())
		draw.Draw(img, img.Bounds(), src, src.Bounds().Min, draw.Src)
	}
	x0 := img.Bounds().Min.X + int(c.CenterX-float64(w)/2+0.5)
	y0 := img.Bounds().Min.Y + int(c.CenterY-float64(h)/2+0.5)
	fill := image.NewUniform(ink)
	for i, r := range rs {
		g, ok := glyphs[r]
		if !ok {
			return nil, fmt.Errorf("badge: no glyph for %q", r)
		}
		gx := x0 + i*(3*scale+gap)
		for row, line := range g {
			for col, on := range line {
				if on != '#' {
					continue
				}
				px := image.Rect(gx+col*scale, y0+row*scale, gx+(col+1)*scale, y0+(row+1)*scale)
				draw.Draw(img, px, fill, image.Point{}, draw.Over)
			}
		}
	}
	var b bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&b, img); err != nil {
		return nil, fmt.Errorf("badge: encode icon: %w", err)
	}
	return b.Bytes(), nil
}

// Icons makes and keeps the badged icons of one base icon. Safe for
// concurrent use.
type Icons struct {
	base   []byte
	circle Circle
	ink    color.Color

	mu   sync.Mutex
	made map[string][]byte
}

// NewIcons is the badged icons of base (a PNG) with the badge circle c
// and the text in ink.
func NewIcons(base []byte, c Circle, ink color.Color) *Icons {
	return &Icons{base: base, circle: c, ink: ink, made: map[string][]byte{}}
}

// For is the icon for n waiting and its badge text (Text(n)); the base
// icon for n ≤ 0.
func (s *Icons) For(n int) ([]byte, string, error) {
	text := Text(n)
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.made[text]; ok {
		return b, text, nil
	}
	b, err := Draw(s.base, s.circle, text, s.ink)
	if err != nil {
		return nil, text, err
	}
	s.made[text] = b
	return b, text, nil
}
