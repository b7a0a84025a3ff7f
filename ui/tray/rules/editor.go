package rules

import (
	"context"
	"fmt"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/widget"

	"github.com/tollgate-fw/tollgate/shared"
	"github.com/tollgate-fw/tollgate/ui/tray/rules/rulemodel"
)

// Choices of the form's selects that stand for "not set".
const (
	protoAny     = "any"
	directionAny = "both"
)

// Owner choices of the form.
const (
	ownerUser   = "Me: my programs only"
	ownerSystem = "System: every user (asks for an administrator)"
)

// editor is the add/edit form, in a window of its own.
type editor struct {
	w        *Window
	win      fyne.Window
	base     shared.Rule // the rule edited, or the template of a new one
	id       string      // "" for a new rule
	readOnly string      // why the rule cannot be changed; "" when it can
	admin    bool        // a system or another user's rule, being edited as administrator

	name, exe, host, ip, port, localPort, until, note *widget.Entry
	action, lifetime, proto, direction, owner         *widget.Select
	enabled                                           *widget.Check
	info, msg                                         *widget.Label
	save, cancel, unlock                              *widget.Button
	byField                                           map[string]fyne.Focusable
}

// openEditor shows the form for base: a new rule when id is "", else rule
// id; readOnly (a reason) shows it without a way to save.
func (w *Window) openEditor(base shared.Rule, id, readOnly string) *editor {
	if w.editor != nil {
		w.editor.close()
	}
	e := &editor{w: w, base: base, id: id, readOnly: readOnly}
	e.build()
	w.editor = e
	e.win.Show()
	e.win.RequestFocus()
	return e
}

func (e *editor) build() {
	title := "Tollgate — New rule"
	switch {
	case e.readOnly != "":
		title = "Tollgate — Rule (read-only)"
	case e.id != "":
		title = "Tollgate — Edit rule"
	}
	e.win = e.w.app.NewWindow(title)
	e.win.SetCloseIntercept(e.close)

	f := rulemodel.FormFromRule(e.base, e.w.o.Location)
	entry := func(text, placeholder string) *widget.Entry {
		en := widget.NewEntry()
		en.SetText(text)
		en.SetPlaceHolder(placeholder)
		return en
	}
	e.name = entry(f.Name, "optional")
	e.exe = entry(f.Exe, "/usr/bin/app (or a glob); empty = any application")
	e.host = entry(f.Host, "example.org or *.example.org; empty = any")
	e.ip = entry(f.IP, "192.0.2.7, 2001:db8::/32; empty = any")
	e.port = entry(f.Port, "443 or 8000-8100; empty = any")
	e.localPort = entry(f.LocalPort, "for inbound: 22; empty = any")
	e.until = entry(f.Until, "only with lifetime until")
	e.note = entry(f.Note, "optional")

	e.action = widget.NewSelect([]string{string(shared.ActionAllow), string(shared.ActionDeny), string(shared.ActionReject)}, nil)
	e.action.PlaceHolder = "(choose)"
	if f.Action != "" {
		e.action.SetSelected(f.Action)
	}
	e.lifetime = widget.NewSelect(rulemodel.Lifetimes(e.base), func(l string) { e.lifetimeChanged(l) })
	e.lifetime.SetSelected(f.Lifetime)
	e.proto = widget.NewSelect([]string{protoAny, string(shared.ProtoTCP), string(shared.ProtoUDP), string(shared.ProtoICMP)}, nil)
	e.proto.SetSelected(orDefault(f.Proto, protoAny))
	e.direction = widget.NewSelect([]string{directionAny, string(shared.DirectionOut), string(shared.DirectionIn)}, nil)
	e.direction.SetSelected(orDefault(f.Direction, directionAny))
	e.enabled = widget.NewCheck("Enabled", nil)
	e.enabled.SetChecked(f.Enabled)
	e.owner = widget.NewSelect([]string{ownerUser, ownerSystem}, nil)
	e.owner.SetSelected(ownerUser)
	if f.System {
		e.owner.SetSelected(ownerSystem)
	}
	if e.id != "" {
		// The owner of a kept rule is not changed here (an update that
		// leaves it out keeps it).
		e.owner.Disable()
	}

	e.info = widget.NewLabel("")
	e.info.Wrapping = fyne.TextWrapWord
	e.info.Hide()
	e.msg = widget.NewLabel("")
	e.msg.Importance = widget.DangerImportance
	e.msg.Wrapping = fyne.TextWrapWord
	e.msg.Hide()

	e.byField = map[string]fyne.Focusable{
		"name": e.name, "exe": e.exe, "host": e.host, "ip": e.ip, "port": e.port, "local_port": e.localPort,
		"until": e.until, "note": e.note,
	}

	form := widget.NewForm(
		widget.NewFormItem("Name", e.name),
		widget.NewFormItem("Action", e.action),
		widget.NewFormItem("Application", e.exe),
		widget.NewFormItem("Host", e.host),
		widget.NewFormItem("IP", e.ip),
		widget.NewFormItem("Port", e.port),
		widget.NewFormItem("Protocol", e.proto),
		widget.NewFormItem("Direction", e.direction),
		widget.NewFormItem("Local port", e.localPort),
		widget.NewFormItem("Lifetime", e.lifetime),
		widget.NewFormItem("Until", e.until),
		widget.NewFormItem("Note", e.note),
		widget.NewFormItem("Owner", e.owner),
		widget.NewFormItem("", e.enabled),
	)
	e.save = widget.NewButton("Save", e.submit)
	e.save.Importance = widget.HighImportance
	e.cancel = widget.NewButton("Cancel", e.close)
	e.unlock = widget.NewButton("Edit as administrator", e.unlockAdmin)
	e.unlock.Hide()
	buttons := container.NewHBox(e.unlock, layout.NewSpacer(), e.cancel, e.save)

	if e.readOnly != "" {
		e.setReadOnly(true)
		e.showInfo(e.readOnly)
	}
	e.lifetimeChanged(e.lifetime.Selected)
	e.win.SetContent(container.NewBorder(nil, container.NewVBox(e.info, e.msg, buttons), nil, nil, form))
	e.win.Resize(fyne.NewSize(600, 0))
	e.win.Canvas().SetOnTypedKey(func(ev *fyne.KeyEvent) {
		if ev.Name == fyne.KeyEscape {
			e.close()
		}
	})
	for _, en := range []*widget.Entry{e.name, e.exe, e.host, e.ip, e.port, e.localPort, e.until, e.note} {
		en.OnSubmitted = func(string) { e.submit() } // Enter saves
	}
}

// setReadOnly disables every field (and clears the hints of the empty
// ones: a grey hint reads like a value), or enables them again.
func (e *editor) setReadOnly(ro bool) {
	for _, d := range []fyne.Disableable{e.name, e.exe, e.host, e.ip, e.port, e.localPort, e.until, e.note,
		e.action, e.lifetime, e.proto, e.direction, e.enabled} {
		if ro {
			d.Disable()
		} else {
			d.Enable()
		}
	}
	for _, en := range []*widget.Entry{e.name, e.exe, e.host, e.ip, e.port, e.localPort, e.until, e.note} {
		if ro {
			en.SetPlaceHolder("")
		}
	}
	if ro {
		e.save.Hide()
		e.cancel.SetText("Close")
	} else {
		e.save.Show()
		e.cancel.SetText("Cancel")
	}
}

// offerAdmin offers to edit the read-only rule as administrator: the
// daemon asks polkit when it is saved.
func (e *editor) offerAdmin() {
	e.unlock.Show()
}

func (e *editor) unlockAdmin() {
	e.admin = true
	e.readOnly = ""
	e.unlock.Hide()
	e.win.SetTitle("Tollgate — Edit rule (administrator)")
	// The hints were cleared: a rebuilt form has them back.
	for en, ph := range map[*widget.Entry]string{
		e.name: "optional", e.exe: "/usr/bin/app (or a glob); empty = any application",
		e.host: "example.org or *.example.org; empty = any", e.ip: "192.0.2.7, 2001:db8::/32; empty = any",
		e.port: "443 or 8000-8100; empty = any", e.localPort: "for inbound: 22; empty = any",
		e.until: "only with lifetime until", e.note: "optional",
	} {
		en.SetPlaceHolder(ph)
	}
	e.setReadOnly(false)
	e.lifetimeChanged(e.lifetime.Selected)
	e.showInfo("Saving asks for an administrator's password.")
}

func (e *editor) showInfo(text string) {
	e.info.SetText(text)
	if text == "" {
		e.info.Hide()
	} else {
		e.info.Show()
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// lifetimeChanged enables the until entry for lifetime until, and offers a
// time an hour ahead when it is empty.
func (e *editor) lifetimeChanged(l string) {
	if e.until == nil || e.readOnly != "" {
		return
	}
	if l != string(shared.LifetimeUntil) {
		e.until.Disable()
		return
	}
	e.until.Enable()
	if e.until.Text == "" {
		loc := e.w.o.Location
		if loc == nil {
			loc = time.Local
		}
		e.until.SetText(time.Now().Add(time.Hour).In(loc).Truncate(time.Minute).Format(time.RFC3339))
	}
}

// form reads the widgets.
func (e *editor) form() rulemodel.Form {
	f := rulemodel.Form{
		Name:      e.name.Text,
		Action:    e.action.Selected,
		Lifetime:  e.lifetime.Selected,
		Exe:       e.exe.Text,
		Host:      e.host.Text,
		IP:        e.ip.Text,
		Port:      e.port.Text,
		LocalPort: e.localPort.Text,
		Note:      e.note.Text,
		Enabled:   e.enabled.Checked,
		System:    e.owner.Selected == ownerSystem,
	}
	if f.Lifetime == string(shared.LifetimeUntil) {
		f.Until = e.until.Text
	}
	if p := e.proto.Selected; p != protoAny {
		f.Proto = p
	}
	if d := e.direction.Selected; d != directionAny {
		f.Direction = d
	}
	return f
}

func (e *editor) showMsg(err error) {
	if err == nil {
		e.msg.SetText("")
		e.msg.Hide()
		return
	}
	e.msg.SetText(err.Error())
	e.msg.Show()
}

// submit checks the form with the shared validator and, when it holds,
// adds or updates the rule. The validator's message is shown as it is and
// nothing is sent when it does not hold.
func (e *editor) submit() {
	if e.readOnly != "" {
		return
	}
	r, err := e.form().Rule(e.base)
	if err != nil {
		e.showMsg(err)
		if f, ok := e.byField[rulemodel.FieldOf(err)]; ok {
			e.win.Canvas().Focus(f)
		}
		return
	}
	e.showMsg(nil)
	e.save.Disable()
	id := e.id
	w := e.w
	w.call(func(ctx context.Context) error {
		if id == "" {
			newID, err := w.c.AddRuleFields(ctx, rulemodel.WritableFields(r))
			id = newID
			return err
		}
		return w.c.UpdateRule(ctx, id, r)
	}, func(err error) {
		if err != nil {
			// The daemon's refusal, as it said it.
			what := "add rule"
			if e.id != "" {
				what = "update rule " + e.id
			}
			e.showMsg(fmt.Errorf("%s: %w", what, err))
			e.save.Enable()
			return
		}
		w.log.Info("rule saved", "id", id)
		w.selected = id
		e.close()
		w.reload()
	})
}

// rulesChanged tells the form the list was reloaded: a rule deleted
// elsewhere meanwhile is said to be gone.
func (e *editor) rulesChanged() {
	if e.id == "" {
		return
	}
	if _, ok := e.w.model.Find(e.id); !ok {
		e.showMsg(fmt.Errorf("rule %s was deleted meanwhile", e.id))
		e.save.Disable()
	}
}

func (e *editor) close() {
	e.win.Close()
	if e.w.editor == e {
		e.w.editor = nil
	}
}
