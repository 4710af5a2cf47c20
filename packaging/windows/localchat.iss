; Inno Setup script: LocalChat-Setup-<version>.exe from the PyInstaller bundle.
; Built by packaging/build.py, which passes the defines; by hand:
;   iscc /DAppVersion=0.1.0 /DSourceDir=dist\LocalChat /DOutputDir=dist packaging\windows\localchat.iss
; Installs per user by default (no administrator needed), or for everyone;
; adds a start-menu entry (and optionally a desktop icon) and an uninstaller.
; Uninstalling removes the program only: models and chats live in the user's
; AppData folder and stay.

#ifndef AppVersion
  #error Pass /DAppVersion=<version>
#endif
#ifndef SourceDir
  #define SourceDir "..\..\dist\LocalChat"
#endif
#ifndef OutputDir
  #define OutputDir "..\..\dist"
#endif

[Setup]
AppId={{6C1F5E0A-3B7B-4C51-9E0B-4C0C4A7D2F11}
AppName=LocalChat
AppVersion={#AppVersion}
AppVerName=LocalChat {#AppVersion}
AppPublisher=LocalChat developers
AppPublisherURL=https://github.com/localchat/localchat
DefaultDirName={autopf}\LocalChat
DefaultGroupName=LocalChat
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#OutputDir}
OutputBaseFilename=LocalChat-Setup-{#AppVersion}
SetupIconFile=..\..\assets\icons\localchat.ico
UninstallDisplayIcon={app}\localchat.exe
UninstallDisplayName=LocalChat
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
CloseApplications=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\LocalChat"; Filename: "{app}\localchat.exe"; Comment: "Chat with language models on your computer"
Name: "{autodesktop}\LocalChat"; Filename: "{app}\localchat.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\localchat.exe"; Description: "{cm:LaunchProgram,LocalChat}"; Flags: nowait postinstall skipifsilent
