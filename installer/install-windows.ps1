<#
.SYNOPSIS
    obs-rvm for OBS Studio on Windows: the manual steps of docs/install.md, automated.

.DESCRIPTION
    UNTESTED: written against the documented behaviour of OBS, Python and pip on Windows, but never run by the
    project (its CI is Linux-only). If anything here fails, follow the "Windows (manual)" steps in docs/install.md, which
    this script only automates:
      1. pick the Python version your OBS release loads (-PythonVersion, else from obs64.exe's version);
      2. create a virtual environment with it in %LOCALAPPDATA%\obs-rvm\obs-rvm\venv and pip install obs-rvm;
      3. put the model in place (official download, or -Model PATH) and write
         %APPDATA%\obs-rvm\environment.json, which the OBS script reads;
      4. print what to set in OBS (Tools > Scripts > Python Settings) and the script to add.
    Run it again at any time: it reuses what is already there.

.EXAMPLE
    powershell -ExecutionPolicy Bypass -File installer\install-windows.ps1
.EXAMPLE
    powershell -ExecutionPolicy Bypass -File installer\install-windows.ps1 -PythonVersion 3.11 -Model C:\Downloads\rvm_mobilenetv3_fp32.onnx
#>
[CmdletBinding()]
param(
    [string]$ObsDir = "$env:ProgramFiles\obs-studio",
    [string]$PythonVersion = "",
    [string]$Model = "",
    [switch]$Gpu
)
$ErrorActionPreference = "Stop"
$Src = Split-Path -Parent $PSScriptRoot

function Fail([string]$Message) {
    Write-Host "install-windows.ps1: error: $Message" -ForegroundColor Red
    exit 1
}

if (-not (Test-Path (Join-Path $Src "obs_rvm\install\model.py"))) {
    Fail "run it from an obs-rvm source folder (obs_rvm\ not found beside installer\)"
}

# 1. The Python version OBS loads (OBS 29.0: up to 3.10, 29.1-30.0: up to 3.11, 30.1 and newer: up to 3.12).
if (-not $PythonVersion) {
    $exe = Join-Path $ObsDir "bin\64bit\obs64.exe"
    if (-not (Test-Path $exe)) {
        Fail "OBS not found at $ObsDir : pass -ObsDir 'C:\path\to\obs-studio', or -PythonVersion 3.X"
    }
    $obsVersion = [version](((Get-Item $exe).VersionInfo.ProductVersion) -replace '[^0-9.].*$', '')
    if ($obsVersion -ge [version]"30.1") { $PythonVersion = "3.12" }
    elseif ($obsVersion -ge [version]"29.1") { $PythonVersion = "3.11" }
    else { $PythonVersion = "3.10" }
    Write-Host "OBS $obsVersion : using Python $PythonVersion"
}
$base = & py "-$PythonVersion" -c "import sys; print(sys.base_prefix)" 2>$null
if ($LASTEXITCODE -ne 0 -or -not $base) {
    Fail ("Python $PythonVersion (64-bit) not found: install it from https://www.python.org/downloads/windows/ " +
          "(with the py launcher), then run this again")
}

# 2. The environment, with that exact Python.
$Data = Join-Path $env:LOCALAPPDATA "obs-rvm\obs-rvm"
$Venv = Join-Path $Data "venv"
$VenvPy = Join-Path $Venv "Scripts\python.exe"
if (Test-Path $VenvPy) {
    $have = & $VenvPy -c "import sys; print(sys.winver)"
    if ($have -ne $PythonVersion) {
        Write-Host "Rebuilding $Venv (it was made for Python $have)"
        Remove-Item -Recurse -Force $Venv
    }
}
if (-not (Test-Path $VenvPy)) {
    & py "-$PythonVersion" -m venv $Venv
    if ($LASTEXITCODE -ne 0) { Fail "could not create the environment $Venv" }
}
$target = if ($Gpu) { "$($Src)[gpu]" } else { $Src }
& $VenvPy -m pip install --disable-pip-version-check $target
if ($LASTEXITCODE -ne 0) { Fail "pip could not install obs-rvm (its error is above): check the network, run this again" }

# 3. The model, and environment.json for the OBS script.
$modelArgs = @()
if ($Model) { $modelArgs += (Resolve-Path $Model).Path }
$modelJson = & $VenvPy -m obs_rvm.install.model @modelArgs
if ($LASTEXITCODE -ne 0) { Fail "the model could not be put in place (the reason is above)" }
$placed = ($modelJson | Select-Object -Last 1) | ConvertFrom-Json
Write-Host "Model: $($placed.name): $($placed.path) ($($placed.check))"
$envArgs = @()
if ($placed.default_model) { $envArgs += $placed.default_model }
$wired = (& $VenvPy -m obs_rvm.environment @envArgs | Select-Object -Last 1) | ConvertFrom-Json
if ($LASTEXITCODE -ne 0) { Fail "could not write environment.json (the reason is above)" }
Write-Host "Wrote $($wired.path)"

# 4. What the user does in OBS.
$script = Join-Path $Venv "Lib\site-packages\obs_rvm\obs_script.py"
Write-Host ""
Write-Host "Done (untested on Windows: tell us what happened). Next, in OBS:"
Write-Host "  1. Tools > Scripts > Python Settings: set the Python install path to $base , then restart OBS."
Write-Host "  2. Tools > Scripts > + : pick $script"
Write-Host "  3. Right-click your camera source > Filters > + > AI Background."
Write-Host "Check the setup: $(Join-Path $Venv 'Scripts\obs-rvm.exe') doctor"
